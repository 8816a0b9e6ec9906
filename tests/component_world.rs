//! The built component's world: what it imports and exports, as Spin and our host see it.

mod common;

use std::collections::BTreeSet;

fn world() -> (BTreeSet<String>, BTreeSet<String>) {
    common::component_world(&std::fs::read(common::component()).unwrap())
}

fn versioned(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|v| v.starts_with("0.2."))
}

#[test]
fn imports_only_what_spin_provides() {
    let (imports, _) = world();
    for required in [
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:config/store@0.2.0-draft-2024-09-27",
        "slack-logs:collector/sink@0.1.0",
    ] {
        assert!(
            imports.contains(required),
            "{required} not imported: {imports:?}"
        );
    }
    assert!(
        imports
            .iter()
            .any(|i| versioned(i, "wasi:http/outgoing-handler@")),
        "{imports:?}"
    );
    for i in &imports {
        let allowed = i == "wasi:keyvalue/store@0.2.0-draft2"
            || i == "wasi:config/store@0.2.0-draft-2024-09-27"
            || i == "slack-logs:collector/sink@0.1.0"
            || versioned(i, "wasi:http/outgoing-handler@")
            || versioned(i, "wasi:http/types@")
            || [
                "wasi:cli/",
                "wasi:io/",
                "wasi:clocks/",
                "wasi:random/",
                "wasi:filesystem/",
            ]
            .iter()
            .any(|p| {
                i.starts_with(p) && i.split('@').nth(1).is_some_and(|v| v.starts_with("0.2."))
            });
        assert!(allowed, "unexpected import {i}");
        assert!(
            !i.starts_with("wasi:keyvalue/atomics") && !i.starts_with("wasi:keyvalue/batch"),
            "{i}"
        );
    }
}

#[test]
fn exports_exactly_collector_and_one_http_handler() {
    let (_, exports) = world();
    assert_eq!(exports.len(), 2, "{exports:?}");
    assert!(
        exports.contains("slack-logs:collector/collector@0.1.0"),
        "{exports:?}"
    );
    assert!(
        exports
            .iter()
            .any(|e| versioned(e, "wasi:http/incoming-handler@")),
        "{exports:?}"
    );
}
