# Reads one guest's results stream (ci/guest/init writes it to the second
# serial port) and decides the row. Variables set with -v:
#   row      the row's label (JUnit suite names)
#   expect   the expected Landlock ABI: a number or "none"
#   junit    where to write JUnit XML
#   console  the console log, quoted in JUnit when the guest did not finish
# Prints one tab-separated line:
#   probed passed failed skipped verdict reason
# verdict is "pass" only when the guest's sentinel says pass, the probed ABI
# is the expected one, every binary printed a libtest summary, and nothing
# failed: the guest's word alone is not enough, and neither is QEMU's exit code.

function xml(s) {
  gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s)
  gsub(/"/, "\\&quot;", s)
  gsub(/[\001-\010\013\014\016-\037]/, "", s)
  return s
}
function addcase(suite, name, status, detail) {
  ncase++
  csuite[ncase] = suite; cname[ncase] = name; cstatus[ncase] = status; cdetail[ncase] = detail
  if (!(suite in seen_suite)) { seen_suite[suite] = 1; suites[++nsuite] = suite }
}
function problem(msg) { problems = problems (problems == "" ? "" : "; ") msg }

{ sub(/\r$/, "") }

/^@@SANDSPEC-GUEST / { started = 1; next }
/^@@CMDLINE / { next }
/^@@PROBE / {
  probe = substr($0, 8)
  if (match(probe, /"landlock":\{"abi":[0-9]+\}/)) {
    probed = substr(probe, RSTART + 18, RLENGTH - 19)
  } else if (probe ~ /"landlock":"not_built"/) {
    probed = "none(ENOSYS)"
  } else if (probe ~ /"landlock":"disabled"/) {
    probed = "none(EOPNOTSUPP)"
  } else if (match(probe, /"landlock":\{"error":-?[0-9]+\}/)) {
    probed = "error(errno " substr(probe, RSTART + 20, RLENGTH - 21) ")"
  } else {
    probed = "unknown"
  }
  next
}
/^@@BEGIN / {
  inblock = 1; who = $2; bin = $3; suite = who ":" bin
  summary = 0; infail = 0; failname = ""
  next
}
/^@@END / {
  inblock = 0
  rc = $4; sub(/^rc=/, "", rc)
  if (!summary) {
    addcase(suite, "(binary)", "failed", "exited " rc " without a libtest summary line (crashed or timed out)")
    failed++
    problem(suite " printed no libtest summary (rc=" rc ")")
  } else if (rc != 0 && !summary_failed) {
    addcase(suite, "(binary)", "failed", "exited " rc " after reporting success")
    failed++
    problem(suite " exited " rc)
  }
  summary_failed = 0
  next
}
/^@@SANDSPEC-MATRIX-DONE / {
  sentinel = $0
  next
}
inblock && /^---- .* stdout ----$/ {
  failname = $0; sub(/^---- /, "", failname); sub(/ stdout ----$/, "", failname)
  infail = 1
  next
}
inblock && /^(failures:|test result: )/ { infail = 0 }
inblock && infail { failout[suite SUBSEP failname] = failout[suite SUBSEP failname] $0 "\n"; next }
inblock && /^test .* \.\.\. (ok|FAILED|ignored.*)$/ {
  line = $0; sub(/^test /, "", line)
  name = line; sub(/ \.\.\. (ok|FAILED|ignored.*)$/, "", name)
  status = line; sub(/^.* \.\.\. /, "", status)
  if (status == "ok") addcase(suite, name, "passed", "")
  else if (status == "FAILED") addcase(suite, name, "failed", "")
  else { reason = status; sub(/^ignored,? ?/, "", reason); addcase(suite, name, "skipped", reason) }
  next
}
inblock && /^test result: (ok|FAILED)\. [0-9]+ passed; [0-9]+ failed; [0-9]+ ignored;/ {
  summary = 1
  summary_failed = ($3 == "FAILED.")
  passed += $4; failed += $6; skipped += $8
  if ($6 + 0 > 0) problem(suite ": " $6 " failed")
  next
}

END {
  if (!started) problem("the guest never started its init (see console.log)")
  if (probed == "") { probed = "-"; problem("the guest reported no probe") }
  if (expect == "none") abi_ok = (probed ~ /^none\(/)
  else abi_ok = (probed == expect)
  if (!abi_ok) problem("expected Landlock ABI " expect ", probed " probed)
  addcase("probe", "landlock_abi_is_" expect, abi_ok ? "passed" : "failed", abi_ok ? "" : "probed " probed)
  if (sentinel == "") {
    problem("no sentinel line from the guest (kernel panic, hang, or timeout)")
    addcase("guest", "sentinel", "failed", "the guest never wrote its sentinel line")
  } else if (sentinel !~ / verdict=pass( |$)/) {
    msg = sentinel; sub(/^@@SANDSPEC-MATRIX-DONE verdict=fail ?/, "", msg)
    problem("guest: " msg)
    addcase("guest", "sentinel", "failed", sentinel)
  } else {
    addcase("guest", "sentinel", "passed", "")
  }
  verdict = (problems == "" && failed == 0) ? "pass" : "fail"

  if (junit != "") {
    printf "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" > junit
    printf "<testsuites name=\"%s\">\n", xml("kernel-matrix " row) > junit
    for (s = 1; s <= nsuite; s++) {
      st = suites[s]; nt = nf = ns = 0
      for (c = 1; c <= ncase; c++) if (csuite[c] == st) { nt++; if (cstatus[c] == "failed") nf++; if (cstatus[c] == "skipped") ns++ }
      printf "  <testsuite name=\"%s\" tests=\"%d\" failures=\"%d\" skipped=\"%d\">\n", xml(row " " st), nt, nf, ns > junit
      for (c = 1; c <= ncase; c++) {
        if (csuite[c] != st) continue
        printf "    <testcase classname=\"%s\" name=\"%s\"", xml(row " " st), xml(cname[c]) > junit
        if (cstatus[c] == "passed") { printf "/>\n" > junit; continue }
        printf ">\n" > junit
        if (cstatus[c] == "skipped") printf "      <skipped message=\"%s\"/>\n", xml(cdetail[c]) > junit
        else {
          body = failout[st SUBSEP cname[c]]
          printf "      <failure message=\"%s\">%s</failure>\n", xml(cdetail[c] != "" ? cdetail[c] : "test failed"), xml(body) > junit
        }
        printf "    </testcase>\n" > junit
      }
      printf "  </testsuite>\n" > junit
    }
    printf "</testsuites>\n" > junit
    close(junit)
  }
  printf "%s\t%d\t%d\t%d\t%s\t%s\n", probed, passed, failed, skipped, verdict, problems
}
