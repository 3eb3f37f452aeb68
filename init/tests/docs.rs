//! docs/protocol.md documents every error and warning code the stack can
//! put in result.json (the manager and field engineers read them there).

#[test]
fn every_code_is_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = std::fs::read_to_string(root.join("init/src/error.rs")).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/protocol.md")).unwrap();
    let codes: Vec<&str> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(codes.len() > 20, "found only {codes:?}");
    let missing: Vec<&&str> = codes
        .iter()
        .filter(|c| !doc.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "codes missing from docs/protocol.md: {missing:?}"
    );
}
