//! Test-only validation of an OCSF event against the schema facts in `schema.json`: the class
//! exists, category/activity/severity/status ids are in range, `type_uid = class_uid * 100 +
//! activity_id`, captions agree with the ids (a class's own enum, such as a Finding's `status_id`,
//! replaces the global one), required attributes and at-least-one constraints
//! hold (for the event and each nested object), every attribute belongs to its class or object
//! (profile attributes only with the profile named in `metadata.profiles`), and every value has
//! its attribute's type (integers, strings, IP addresses, e-mail addresses, arrays, objects).

use serde_json::{Map, Value};

use super::{is_ocsf_email, schema_facts, OTHER};

pub fn validate(event: &Value) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    check_event(event, &mut errs);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn check_event(event: &Value, errs: &mut Vec<String>) {
    let facts = schema_facts();
    let Some(ev) = event.as_object() else {
        errs.push("event is not an object".into());
        return;
    };
    let uint = |k: &str| ev.get(k).and_then(Value::as_u64);
    let Some(class_uid) = uint("class_uid") else {
        errs.push("class_uid missing or not an integer".into());
        return;
    };
    let Some(class) = facts["classes"].get(class_uid.to_string()) else {
        errs.push(format!("class_uid {class_uid} is not a class of the facts"));
        return;
    };
    let caption = class["caption"].as_str().unwrap_or_default();
    if uint("category_uid") != class["category_uid"].as_u64() {
        errs.push(format!(
            "category_uid {:?} is not {} for class {class_uid}",
            ev.get("category_uid"),
            class["category_uid"]
        ));
    }
    let activity = uint("activity_id");
    let activity_caption = activity.and_then(|a| class["activities"][a.to_string()].as_str());
    if activity_caption.is_none() {
        errs.push(format!(
            "activity_id {:?} is not an activity of {caption}",
            ev.get("activity_id")
        ));
    }
    if let Some(a) = activity {
        if uint("type_uid") != Some(class_uid * 100 + a) {
            errs.push(format!(
                "type_uid {:?} is not class_uid * 100 + activity_id = {}",
                ev.get("type_uid"),
                class_uid * 100 + a
            ));
        }
    }
    for (id_key, enum_key, caption_key) in [
        ("severity_id", "severity_id", "severity"),
        ("status_id", "status_id", "status"),
    ] {
        if let Some(v) = ev.get(id_key) {
            // A class may define its own enum (Findings: status New, In Progress, …).
            let values = class
                .get("enums")
                .and_then(|e| e.get(enum_key))
                .unwrap_or(&facts["enums"][enum_key]);
            let cap = v.as_u64().and_then(|id| values[id.to_string()].as_str());
            match cap {
                None => errs.push(format!("{id_key} {v} is not in its enum")),
                Some(c) => {
                    if let Some(given) = ev.get(caption_key) {
                        if given.as_str() != Some(c) {
                            errs.push(format!("{caption_key} {given} is not {c}"));
                        }
                    }
                }
            }
        }
    }
    // Captions, when given, agree with the ids.
    let expect = |key: &str, want: Option<&str>, errs: &mut Vec<String>| {
        if let (Some(given), Some(want)) = (ev.get(key), want) {
            if given.as_str() != Some(want) {
                errs.push(format!("{key} {given} is not {want:?}"));
            }
        }
    };
    expect("class_name", Some(caption), errs);
    let category = uint("category_uid").map(|c| c.to_string());
    expect(
        "category_name",
        category
            .as_deref()
            .and_then(|c| facts["categories"][c].as_str()),
        errs,
    );
    if activity != Some(u64::from(OTHER)) {
        expect("activity_name", activity_caption, errs);
    }
    if let Some(ac) = activity_caption {
        expect("type_name", Some(&format!("{caption}: {ac}")), errs);
    }

    let profiles: Vec<&str> = ev
        .get("metadata")
        .and_then(|m| m.get("profiles"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let attrs = class["attributes"].as_object().expect("class attributes");
    check_members(ev, attrs, class.get("constraints"), "", &profiles, errs);
}

/// Checks the members of an event or object against its attribute facts.
fn check_members(
    obj: &Map<String, Value>,
    attrs: &Map<String, Value>,
    constraints: Option<&Value>,
    path: &str,
    profiles: &[&str],
    errs: &mut Vec<String>,
) {
    for (k, v) in obj {
        let here = format!("{path}{k}");
        let Some(spec) = attrs.get(k) else {
            errs.push(format!("{here} is not an attribute here"));
            continue;
        };
        if let Some(p) = spec.get("profile").and_then(Value::as_str) {
            if !profiles.contains(&p) {
                errs.push(format!("{here} needs profile {p} in metadata.profiles"));
            }
        }
        if v.is_null() {
            errs.push(format!("{here} is null"));
            continue;
        }
        if let Some(allowed) = spec.get("enum").and_then(Value::as_array) {
            if !allowed.contains(v) {
                errs.push(format!("{here} = {v} is not in its enum"));
            }
        }
        let ty = spec["type"].as_str().unwrap_or_default();
        check_value(v, ty, &here, profiles, errs);
    }
    for (k, spec) in attrs {
        if spec["requirement"] == "required"
            && spec.get("profile").is_none()
            && obj.get(k).is_none_or(Value::is_null)
        {
            errs.push(format!("{path}{k} is required"));
        }
    }
    if let Some(one_of) = constraints
        .and_then(|c| c.get("at_least_one"))
        .and_then(Value::as_array)
    {
        let any = one_of
            .iter()
            .filter_map(Value::as_str)
            .any(|k| obj.get(k).is_some_and(|v| !v.is_null()));
        if !any {
            errs.push(format!("{path}: needs at least one of {one_of:?}"));
        }
    }
}

fn check_value(v: &Value, ty: &str, path: &str, profiles: &[&str], errs: &mut Vec<String>) {
    if let Some(elem) = ty.strip_suffix("[]") {
        match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_value(item, elem, &format!("{path}[{i}]"), profiles, errs);
                }
            }
            None => errs.push(format!("{path} is not an array")),
        }
        return;
    }
    let ok = match ty {
        "integer_t" | "long_t" | "timestamp_t" | "port_t" => v.is_i64() || v.is_u64(),
        "float_t" => v.is_number(),
        "boolean_t" => v.is_boolean(),
        "json_t" => true,
        "object" => v.is_object(),
        "ip_t" => v
            .as_str()
            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        "email_t" => v.as_str().is_some_and(is_ocsf_email),
        t if t.ends_with("_t") => v.as_str().is_some_and(|s| !s.trim().is_empty()),
        object_type => {
            let Some(facts) = schema_facts()["objects"].get(object_type) else {
                errs.push(format!(
                    "{path}: object type {object_type} is not in the facts"
                ));
                return;
            };
            let Some(obj) = v.as_object() else {
                errs.push(format!("{path} is not an object ({object_type})"));
                return;
            };
            let attrs = facts["attributes"].as_object().expect("object attributes");
            check_members(
                obj,
                attrs,
                facts.get("constraints"),
                &format!("{path}."),
                profiles,
                errs,
            );
            return;
        }
    };
    if !ok {
        errs.push(format!("{path} = {v} is not a valid {ty}"));
    }
}
