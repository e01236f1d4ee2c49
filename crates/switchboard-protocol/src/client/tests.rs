use super::*;

fn err(text: &str) -> FrameError {
    parse(text).expect_err(text)
}

#[test]
fn parses_rpc_and_refuses_what_breaks_its_rules() {
    match parse(r#"{"type":"rpc","method":"orders.list","data":{"page":2},"id":5}"#).unwrap() {
        ClientFrame::Rpc { method, data, id } => {
            assert_eq!(method, "orders.list");
            assert_eq!(data.map(RawValue::get), Some(r#"{"page":2}"#));
            assert_eq!(id, 5);
        }
        other => panic!("unexpected {other:?}"),
    }
    match parse(r#"{"type":"rpc","method":"ping","id":0}"#).unwrap() {
        ClientFrame::Rpc { data, .. } => assert!(data.is_none()),
        other => panic!("unexpected {other:?}"),
    }
    let e = err(r#"{"type":"rpc","method":"ping"}"#);
    assert_eq!((e.id, e.code), (None, ErrorCode::MissingField));
    let e = err(r#"{"type":"rpc","id":3}"#);
    assert_eq!((e.id, e.code), (Some(3), ErrorCode::MissingField));
    let e = err(r#"{"type":"rpc","method":7,"id":3}"#);
    assert_eq!((e.id, e.code), (Some(3), ErrorCode::InvalidField));
    for bad in ["", "has space", "é", &"m".repeat(129)] {
        let text = serde_json::json!({"type":"rpc","method":bad,"id":4}).to_string();
        let e = err(&text);
        assert_eq!(
            (e.id, e.code),
            (Some(4), ErrorCode::InvalidField),
            "{bad:?}"
        );
    }
    assert!(validate_method(&"m".repeat(128)).is_ok());
    assert!(validate_method("a-b_c.d:e/f").is_ok());
}

#[test]
fn parses_each_frame() {
    let f = parse(r#"{"type":"join","room":"lobby","id":7}"#).unwrap();
    assert_eq!(
        f,
        ClientFrame::Join {
            room: "lobby".into(),
            id: Some(7),
            since: None,
            presence: false,
            replay_new_epoch: false,
        }
    );
    let f = parse(r#"{"type":"refresh","token":"abc","id":3}"#).unwrap();
    assert_eq!(
        f,
        ClientFrame::Refresh {
            token: "abc".into(),
            id: Some(3)
        }
    );
    let f = parse(r#"{"type":"leave","room":"lobby"}"#).unwrap();
    assert_eq!(
        f,
        ClientFrame::Leave {
            room: "lobby".into(),
            id: None
        }
    );
    let f = parse(r#"{"type":"publish","room":"r","data":{"a":[1, 2]},"id":1,"x":0}"#).unwrap();
    match f {
        ClientFrame::Publish {
            room,
            data,
            id,
            idempotency_key,
            except_self,
        } => {
            assert_eq!(room, "r");
            assert_eq!(data.get(), r#"{"a":[1, 2]}"#);
            assert_eq!(id, Some(1));
            assert_eq!(idempotency_key, None);
            assert!(!except_self);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn publish_idempotency_key() {
    let f =
        parse(r#"{"type":"publish","room":"r","data":1,"idempotency_key":"order-42"}"#).unwrap();
    assert!(
        matches!(f, ClientFrame::Publish { idempotency_key: Some(ref k), .. } if k == "order-42"),
        "{f:?}"
    );
    let long = "k".repeat(129);
    for (key, why) in [
        ("\"\"", "must not be empty"),
        ("\"a b\"", "forbidden character ' '"),
        ("7", "must be a string"),
        (&format!("\"{long}\""), "at most 128 bytes"),
    ] {
        let text =
            format!(r#"{{"type":"publish","room":"r","data":1,"id":5,"idempotency_key":{key}}}"#);
        let e = parse(&text).unwrap_err();
        assert_eq!(e.id, Some(5), "{key}");
        assert_eq!(e.code, ErrorCode::InvalidField, "{key}");
        assert!(e.message.contains(why), "{key}: {}", e.message);
    }
}

#[test]
fn publish_except_self() {
    let f = parse(r#"{"type":"publish","room":"r","data":1,"except_self":true}"#).unwrap();
    assert!(
        matches!(
            f,
            ClientFrame::Publish {
                except_self: true,
                ..
            }
        ),
        "{f:?}"
    );
    let f = parse(r#"{"type":"publish","room":"r","data":1,"except_self":false}"#).unwrap();
    assert!(matches!(
        f,
        ClientFrame::Publish {
            except_self: false,
            ..
        }
    ));
    // Serialized only when set, and read back the same.
    let text = serde_json::to_string(&ClientFrame::Publish {
        room: "r".into(),
        data: &serde_json::value::RawValue::from_string("1".into()).unwrap(),
        id: None,
        idempotency_key: None,
        except_self: true,
    })
    .unwrap();
    assert_eq!(
        text,
        r#"{"type":"publish","room":"r","data":1,"except_self":true}"#
    );
    for bad in ["1", "\"yes\"", "null"] {
        let e = parse(&format!(
            r#"{{"type":"publish","room":"r","data":1,"id":3,"except_self":{bad}}}"#
        ))
        .unwrap_err();
        assert_eq!(
            (e.id, e.code, e.message.as_str()),
            (
                Some(3),
                ErrorCode::InvalidField,
                "field \"except_self\" must be a boolean"
            ),
            "{bad}"
        );
    }
}

#[test]
fn join_since_and_presence() {
    let f =
        parse(r#"{"type":"join","room":"r","since":{"offset":4,"epoch":"e1"},"presence":true,"replay_new_epoch":true}"#)
            .unwrap();
    let since = Some(Since {
        offset: 4,
        epoch: "e1".into(),
    });
    assert_eq!(
        f,
        ClientFrame::Join {
            room: "r".into(),
            id: None,
            since,
            presence: true,
            replay_new_epoch: true,
        }
    );
    let e = err(r#"{"type":"join","room":"r","id":2,"replay_new_epoch":1}"#);
    assert_eq!(
        (e.code, e.id, e.message.as_str()),
        (
            ErrorCode::InvalidField,
            Some(2),
            "field \"replay_new_epoch\" must be a boolean"
        )
    );
    let e = err(r#"{"type":"join","room":"r","since":{"offset":-1,"epoch":"e"},"id":3}"#);
    assert_eq!((e.code, e.id), (ErrorCode::InvalidField, Some(3)));
    assert!(e.message.contains("since"));
    let e = err(r#"{"type":"join","room":"r","since":4}"#);
    assert_eq!(e.code, ErrorCode::InvalidField);
    let e = err(r#"{"type":"join","room":"r","presence":"yes"}"#);
    assert!(e.message.contains("presence"));
    let f = parse(r#"{"type":"presence","room":"r","id":9}"#).unwrap();
    assert_eq!(
        f,
        ClientFrame::Presence {
            room: "r".into(),
            id: Some(9)
        }
    );
}

#[test]
fn null_data_is_a_payload_not_a_missing_field() {
    match parse(r#"{"type":"publish","room":"r","data":null}"#).unwrap() {
        ClientFrame::Publish { data, .. } => assert_eq!(data.get(), "null"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn escaped_room_names_are_decoded() {
    let f = parse(r#"{"type":"join","room":"lo\u0062by"}"#).unwrap();
    assert_eq!(
        f,
        ClientFrame::Join {
            room: "lobby".into(),
            id: None,
            since: None,
            presence: false,
            replay_new_epoch: false,
        }
    );
}

#[test]
fn each_bad_frame_names_its_problem() {
    assert_eq!(err("{nope").code, ErrorCode::BadJson);
    assert_eq!(err("[1,2]").code, ErrorCode::BadJson);
    assert_eq!(err("\"join\"").code, ErrorCode::BadJson);
    let e = err(r#"{"room":"r","id":3}"#);
    assert_eq!((e.code, e.id), (ErrorCode::MissingField, Some(3)));
    assert!(e.message.contains("type"));
    let e = err(r#"{"type":"dance","id":4}"#);
    assert_eq!((e.code, e.id), (ErrorCode::UnknownType, Some(4)));
    assert!(e.message.contains("dance"));
    let e = err(r#"{"type":"join"}"#);
    assert_eq!(e.code, ErrorCode::MissingField);
    assert!(e.message.contains("room"));
    let e = err(r#"{"type":"join","room":5,"id":9}"#);
    assert_eq!((e.code, e.id), (ErrorCode::InvalidField, Some(9)));
    assert!(e.message.contains("room"));
    let e = err(r#"{"type":"publish","room":"r"}"#);
    assert_eq!(e.code, ErrorCode::MissingField);
    assert!(e.message.contains("data"));
    let e = err(r#"{"type":"refresh","id":2}"#);
    assert_eq!((e.code, e.id), (ErrorCode::MissingField, Some(2)));
    assert!(e.message.contains("token"));
    let e = err(r#"{"type":"refresh","token":1}"#);
    assert_eq!(e.code, ErrorCode::InvalidField);
    let e = err(r#"{"type":7}"#);
    assert_eq!(e.code, ErrorCode::InvalidField);
    for bad_id in ["-1", "1.5", "\"1\"", "9007199254740992", "null"] {
        let e = err(&format!(r#"{{"type":"join","room":"r","id":{bad_id}}}"#));
        assert_eq!(
            (e.code, e.id),
            (ErrorCode::InvalidField, None),
            "id {bad_id}"
        );
    }
}

#[test]
fn frames_nested_too_deeply_are_refused_with_their_id() {
    let n = crate::depth::MAX_DEPTH;
    let at_limit = format!(
        r#"{{"type":"publish","room":"r","id":3,"data":{}{}}}"#,
        "[".repeat(n - 1),
        "]".repeat(n - 1)
    );
    assert!(parse(&at_limit).is_ok());
    let over = format!(
        r#"{{"type":"publish","room":"r","id":3,"data":{}{}}}"#,
        "[".repeat(n),
        "]".repeat(n)
    );
    let e = err(&over);
    assert_eq!(
        (e.id, e.code, e.message.as_str()),
        (
            Some(3),
            ErrorCode::BadJson,
            "JSON nested deeper than 64 levels"
        )
    );
    // In a field the server does not read, too.
    let e = err(&format!(
        r#"{{"type":"join","room":"r","x":{}{}}}"#,
        "{\"a\":".repeat(200),
        "}".repeat(200)
    ));
    assert_eq!(e.code, ErrorCode::BadJson);
}
