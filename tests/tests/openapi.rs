//! The OpenAPI document against the running relay: every path it lists
//! answers (never a 404 for the route), JSON answers carry every property
//! the document says is required, fixed values it lists are accepted,
//! an unknown query parameter is refused by name, and what it says needs
//! a token does.

mod support;

use serde_json::{json, Value};
use support::{Cli, Relay};

/// `schema` with its `$ref`s followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let mut s = schema;
    while let Some(r) = s["$ref"].as_str() {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside the document: {r}"));
        s = &doc["components"]["schemas"][name];
        assert!(s.is_object(), "dangling reference {r}");
    }
    s
}

/// Whether `value` has one of the JSON types `ty` names.
fn has_type(ty: &str, value: &Value) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// A light check of `value` against `schema`: the JSON type where one is
/// declared, every required property present, recursively through
/// properties, items and `allOf`. Problems are pushed to `errors`.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let s = resolve(doc, schema);
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| has_type(t, value)) {
        errors.push(format!("{at}: {value} is not {types:?}"));
        return;
    }
    for part in s["allOf"].as_array().into_iter().flatten() {
        check(doc, part, value, at, errors);
    }
    for name in s["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        if value.get(name).is_none() {
            errors.push(format!("{at}: required property {name} missing"));
        }
    }
    if let (Some(props), Some(obj)) = (s["properties"].as_object(), value.as_object()) {
        for (name, prop) in props {
            if let Some(v) = obj.get(name) {
                check(doc, prop, v, &format!("{at}.{name}"), errors);
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Checks a JSON answer against the schema the document gives for
/// `status` of `op`; panics naming every problem.
fn conforms(doc: &Value, op: &Value, status: u16, body: &[u8], what: &str) {
    let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{what}: the document gives no JSON schema for {status}"
    );
    let value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let mut errors = Vec::new();
    check(doc, schema, &value, what, &mut errors);
    assert!(
        errors.is_empty(),
        "{what} does not match the document: {errors:#?}"
    );
}

/// The query parameters `op` documents, with their fixed values if any.
fn query_params(op: &Value) -> Vec<(String, Vec<String>)> {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query")
        .map(|p| {
            let values = p["schema"]["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), values)
        })
        .collect()
}

#[test]
fn the_openapi_document_describes_the_running_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let tablet = Cli::init(
        &tmp.path().join("tab"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let id = tablet.new_case("repair");
    tablet.ok(&["case", "note", &id, "customer brought the remote"]);
    // A photo, so the evidence path has something to serve.
    let mut jpeg = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
    ];
    jpeg.resize(4096, 0x42);
    let photo = tmp.path().join("remote.jpg");
    std::fs::write(&photo, &jpeg).unwrap();
    let out = tablet.ok(&[
        "case",
        "attach",
        &id,
        photo.to_str().unwrap(),
        "--type",
        "photo",
    ]);
    let hash = out.lines().last().unwrap().trim().to_string();
    tablet.ok(&["sync"]);
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");

    // The document needs no token.
    let (status, body) = relay.get("/v1/openapi.json", None);
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_slice(&body).expect("the document is JSON");
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi {version:?}");

    // The light check itself catches a row without its properties.
    let mut errors = Vec::new();
    let page = &doc["paths"]["/v1/cases"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    check(
        &doc,
        page,
        &json!({ "cases": [{ "id": 1 }] }),
        "probe",
        &mut errors,
    );
    assert!(
        errors.iter().any(|e| e.contains("store_id")) && errors.iter().any(|e| e.contains(".id")),
        "{errors:?}"
    );

    let paths = doc["paths"].as_object().expect("paths");
    let mut lists = 0;
    for (path, item) in paths {
        let item = item.as_object().expect("path item");
        if item.contains_key("post") {
            // The writes: head office's erasure and verification. Refusals
            // are the documented error body.
            assert!(
                ["/v1/erasures", "/v1/verify"].contains(&path.as_str()),
                "{path}: the read API only reads"
            );
            assert_eq!(item.keys().collect::<Vec<_>>(), ["post"], "{path}");
            let op = &item["post"];
            let client = reqwest::blocking::Client::new();
            let url = format!("{}{path}", relay.url);
            let r = client.post(&url).json(&json!({})).send().unwrap();
            assert_eq!(r.status().as_u16(), 401, "{path} needs a token");
            conforms(&doc, op, 401, &r.bytes().unwrap(), &format!("POST {path}"));
            let r = client
                .post(&url)
                .bearer_auth(&hq)
                .json(&json!({}))
                .send()
                .unwrap();
            // The erasure names neither field (400); verifying takes none.
            let want = if path == "/v1/erasures" { 400 } else { 200 };
            assert_eq!(r.status().as_u16(), want, "{path} with an empty body");
            conforms(
                &doc,
                op,
                want,
                &r.bytes().unwrap(),
                &format!("POST {path} {{}}"),
            );
            continue;
        }
        assert_eq!(
            item.keys().collect::<Vec<_>>(),
            ["get"],
            "{path}: the read API only reads"
        );
        let op = &item["get"];
        let url = path.replace("{id}", &id).replace("{hash}", &hash);
        assert!(
            !url.contains('{'),
            "{path}: a parameter this test cannot fill"
        );

        // Every path answers with a head-office token, and the JSON
        // answers carry what the document says they do.
        let (status, body) = relay.get(&url, Some(&hq));
        assert_ne!(status, 404, "{path} is documented but not routed");
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let json_schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
        if json_schema.is_object() {
            conforms(&doc, op, 200, &body, &format!("GET {path}"));
        }

        // What the document says needs a token does, and the refusal is
        // the documented error body; what it says is open is.
        let open = op["security"] == json!([{}]);
        let (status, body) = relay.get(&url, None);
        if open {
            assert_eq!(status, 200, "{path} is documented as open");
        } else {
            assert_eq!(status, 401, "{path} is documented as needing a token");
            conforms(&doc, op, 401, &body, &format!("GET {path} without a token"));
        }

        let params = query_params(op);
        if params.is_empty() {
            continue;
        }
        lists += 1;
        // An unknown parameter is refused by name, as documented.
        let (status, body) = relay.get(&format!("{url}?no_such_parameter=1"), Some(&hq));
        assert_eq!(status, 400, "{path} took an unknown parameter");
        conforms(
            &doc,
            op,
            400,
            &body,
            &format!("GET {path}?no_such_parameter"),
        );
        let err: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(err["code"], "bad_request");
        assert!(
            err["error"]
                .as_str()
                .is_some_and(|e| e.contains("no_such_parameter")),
            "{path}: {err}"
        );
        // Every fixed value the document lists is accepted.
        for (name, values) in params {
            for value in values {
                let (status, body) = relay.get(&format!("{url}?{name}={value}"), Some(&hq));
                assert_eq!(
                    status,
                    200,
                    "{path}?{name}={value}: {}",
                    String::from_utf8_lossy(&body)
                );
                if name == "format" && value == "csv" {
                    assert!(
                        body.starts_with(b"\xEF\xBB\xBF"),
                        "{path}: not the CSV answer"
                    );
                } else {
                    conforms(&doc, op, 200, &body, &format!("GET {path}?{name}={value}"));
                }
            }
        }
    }
    // cases, four queues, service metrics, the audit feed.
    assert!(
        lists >= 7,
        "every list endpoint documents its parameters: {lists}"
    );
    // The case is in the list the document's schema was checked against.
    let (_, list) = relay.get_json("/v1/cases", &hq);
    assert_eq!(list["cases"][0]["id"], id.as_str());
}
