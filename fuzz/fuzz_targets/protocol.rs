//! The client frame parser, `switchboard_protocol::client::parse`.
//!
//! Input: the text of one client frame (inputs that are not UTF-8 are
//! skipped: the WebSocket decoder has refused them before they get here).
//! Checks:
//!
//! - no panic;
//! - a frame that parses is a JSON object, and every field the parser
//!   returns agrees with a plain reading of the same text as a
//!   `serde_json::Value`: its `type`, `id`, `room`, `since`, `presence`,
//!   `data`, `idempotency_key`, `token` and `method`;
//! - it serializes, and the serialized text parses to the same frame;
//! - an `id` the parser returns, in a frame or an error, is at most
//!   `MAX_ID`;
//! - text that is not a JSON object is refused with `bad_json`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use switchboard_protocol::client::{self, ClientFrame, MAX_ID};
use switchboard_protocol::{ErrorCode, validate_idempotency_key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `None` when serde_json refuses the text (or a number in it is out of
    // range for a `Value`, which the parser, keeping `data` raw, accepts).
    let generic = serde_json::from_str::<Value>(text).ok();
    match client::parse(text) {
        Ok(frame) => {
            if let Some(value) = &generic {
                let object = value.as_object().expect("a frame is a JSON object");
                agrees(&frame, object);
            }
            if let Some(id) = frame.id() {
                assert!(id <= MAX_ID, "id {id} over MAX_ID");
            }
            let json = serde_json::to_string(&frame).expect("a frame serializes");
            let again = client::parse(&json).expect("a serialized frame parses");
            assert_eq!(again, frame, "serialized as {json}");
        }
        Err(error) => {
            if let Some(id) = error.id {
                assert!(id <= MAX_ID, "id {id} over MAX_ID in an error");
            }
            if generic.as_ref().is_some_and(|v| !v.is_object()) {
                assert_eq!(error.code, ErrorCode::BadJson, "{error}");
            }
        }
    }
});

/// Checks every field of a parsed frame against the same text read as a
/// plain JSON object.
fn agrees(frame: &ClientFrame<'_>, object: &Map<String, Value>) {
    let field = |name: &str| object.get(name);
    let string = |name: &str| field(name).and_then(Value::as_str);
    assert_eq!(string("type"), Some(frame.kind()), "type");
    match frame {
        ClientFrame::Rpc { .. } => {}
        _ => assert_eq!(field("id").is_some(), frame.id().is_some(), "id"),
    }
    if let Some(id) = frame.id() {
        assert_eq!(field("id").and_then(Value::as_u64), Some(id), "id");
    }
    let raw = |raw: &serde_json::value::RawValue| {
        serde_json::from_str::<Value>(raw.get()).expect("raw data is JSON")
    };
    match frame {
        ClientFrame::Join {
            room,
            since,
            presence,
            ..
        } => {
            assert_eq!(string("room"), Some(room.as_ref()), "room");
            match since {
                None => assert!(field("since").is_none(), "since"),
                Some(since) => {
                    let v = field("since").expect("since");
                    assert_eq!(v["offset"].as_u64(), Some(since.offset), "since.offset");
                    assert_eq!(
                        v["epoch"].as_str(),
                        Some(since.epoch.as_ref()),
                        "since.epoch"
                    );
                }
            }
            let sent = field("presence").map(|v| v.as_bool().expect("presence is a boolean"));
            assert_eq!(sent.unwrap_or(false), *presence, "presence");
        }
        ClientFrame::Presence { room, .. } | ClientFrame::Leave { room, .. } => {
            assert_eq!(string("room"), Some(room.as_ref()), "room");
        }
        ClientFrame::Publish {
            room,
            data,
            idempotency_key,
            ..
        } => {
            assert_eq!(string("room"), Some(room.as_ref()), "room");
            assert_eq!(field("data"), Some(&raw(data)), "data");
            assert_eq!(
                string("idempotency_key"),
                idempotency_key.as_deref(),
                "idempotency_key"
            );
            if let Some(key) = idempotency_key {
                assert!(validate_idempotency_key(key).is_ok(), "key {key:?}");
            }
        }
        ClientFrame::Refresh { token, .. } => {
            assert_eq!(string("token"), Some(token.as_ref()), "token");
        }
        ClientFrame::Rpc { method, data, id } => {
            assert_eq!(field("id").and_then(Value::as_u64), Some(*id), "id");
            assert_eq!(string("method"), Some(method.as_ref()), "method");
            assert!(client::validate_method(method).is_ok(), "method {method:?}");
            assert_eq!(field("data").cloned(), data.map(raw), "data");
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
}
