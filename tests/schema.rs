//! conformance/schema.json is generated from the case types; it must not
//! drift from them.

#[test]
fn checked_in_schema_matches_the_case_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/schema.json");
    let on_disk = std::fs::read_to_string(path).expect("failed to read conformance/schema.json");
    let generated = sandspec::corpus::schema::json();
    assert!(
        on_disk == generated,
        "conformance/schema.json is stale: regenerate it with `cargo run -- schema > conformance/schema.json`"
    );
}

#[test]
fn schema_is_strict_about_unknown_fields_and_knows_the_vocabularies() {
    let v: serde_json::Value = serde_json::from_str(&sandspec::corpus::schema::json()).unwrap();
    assert_eq!(v["additionalProperties"], false);
    assert_eq!(
        v["required"],
        serde_json::json!(["id", "summary", "run", "expect"])
    );
    let tags = v["$defs"]["Tag"].to_string();
    assert!(
        tags.contains("\"isolation\"") && tags.contains("\"seed\""),
        "{tags}"
    );
    let caps = v["$defs"]["Capability"].to_string();
    assert!(caps.contains("\"net.tcp_connect\""), "{caps}");
}
