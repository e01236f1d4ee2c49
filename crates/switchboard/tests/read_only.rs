//! `/ws/notifications` refuses client input with `read_only`, carrying the
//! message's `id` whenever one can be read, text or binary.

mod common;

use common::*;
use serde_json::{Value, json};
use switchboard_testkit::ws::Message;

const READ_ONLY: &str =
    "this endpoint only delivers messages; publish through /ws/chat or the HTTP API";

fn read_only(id: Option<u64>) -> Value {
    let mut v = json!({"type": "error", "code": "read_only", "message": READ_ONLY});
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    v
}

async fn send_binary(n: &mut Client, payload: &[u8]) {
    n.send_message(Message::binary(payload.to_vec())).await;
}

#[tokio::test]
async fn binary_frames_carry_their_id_like_text_frames() {
    let server = TestServer::start_default().await;
    let mut n = connect(&server.ws("/ws/notifications")).await;
    let cases: &[(&str, Option<u64>)] = &[
        // A valid client frame.
        (
            r#"{"type":"publish","id":7,"room":"lobby","data":1}"#,
            Some(7),
        ),
        // Not a valid client frame, but its id is.
        (r#"{"type":"subscribe","id":5}"#, Some(5)),
        (r#"{"type":"join","room":42,"id":11}"#, Some(11)),
        // A refresh is a text frame: a binary one is refused too.
        (r#"{"type":"refresh","token":"t","id":3}"#, Some(3)),
        // No valid id.
        (r#"{"type":"join","room":"r","id":-1}"#, None),
        (r#"{"type":"join","room":"r"}"#, None),
        ("hello", None),
    ];
    for (payload, id) in cases {
        send_binary(&mut n, payload.as_bytes()).await;
        assert_eq!(n.next_json().await, read_only(*id), "binary {payload}");
        // The same bytes as a text frame get the same answer.
        if !payload.contains("refresh") {
            n.send_text(payload).await;
            assert_eq!(n.next_json().await, read_only(*id), "text {payload}");
        }
    }
    // Bytes that are not UTF-8 have no readable id.
    send_binary(&mut n, &[0xff, 0xfe, b'{', b'}']).await;
    assert_eq!(n.next_json().await, read_only(None));
    // Still open and still receiving.
    server.post("/api/broadcast", r#"{"data":2}"#).await;
    assert_eq!(n.next_json().await["data"], 2);
}
