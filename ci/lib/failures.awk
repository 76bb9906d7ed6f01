# Prints what libtest said about each failed test binary of one guest's
# results stream: the "failures:" block (each failed test's output and
# panic message), at most `max` lines a binary, indented for the table.
# A binary that never ended (the boot's time ran out) gets its last `max`
# lines instead. CI's log is often all there is to read; the row's logs stay on the
# machine that ran it.

{ sub(/\r$/, "") }
/^@@BEGIN / { name = substr($0, 9); open = 1; n = 0; inblock = 0; nt = 0; next }
/^@@END / {
  if ($NF != "rc=0" && n > 0) {
    printf "    --- %s\n", name
    for (i = 1; i <= n && i <= max; i++) printf "    | %s\n", buf[i]
    if (n > max) printf "    | ... %d more lines in results.txt\n", n - max
  }
  n = 0; inblock = 0; open = 0
  next
}
open { tail[++nt % max] = $0 }
/^failures:$/ { inblock = 1 }
/^test result: / { inblock = 0 }
inblock { buf[++n] = $0 }
END {
  if (open) {
    printf "    --- %s (never ended; its last lines)\n", name
    for (i = (nt > max ? nt - max + 1 : 1); i <= nt; i++) printf "    | %s\n", tail[i % max]
  }
}
