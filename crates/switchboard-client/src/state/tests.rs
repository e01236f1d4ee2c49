//! The protocol state, frame by frame, with no socket.

use super::*;
use crate::client::Ack;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::TryRecvError;

const ACK: Duration = Duration::from_secs(10);

struct Harness {
    state: State,
    events: broadcast::Receiver<Event>,
    now: Instant,
}

impl Harness {
    fn new(buffer: usize) -> Self {
        let (tx, events) = broadcast::channel(64);
        Harness {
            state: State::new(ACK, buffer, tx, Arc::new(AtomicUsize::new(0))),
            events,
            now: Instant::now(),
        }
    }

    fn out(&mut self) -> Vec<Value> {
        self.state
            .take_out()
            .iter()
            .map(|t| serde_json::from_str(t).expect("client frames are JSON"))
            .collect()
    }

    fn frame(&mut self, v: Value) {
        self.state.frame(&v.to_string(), self.now);
    }

    fn message(&mut self, room: &str, offset: u64) {
        self.frame(json!({"type":"message","room":room,"offset":offset,"data":offset}));
    }

    fn join(&mut self, room: &str) -> oneshot::Receiver<Result<Joined, RequestError>> {
        let (tx, rx) = oneshot::channel();
        self.state.join(room.into(), false, tx, self.now);
        rx
    }

    fn publish(&mut self, room: &str, n: u64) -> oneshot::Receiver<Result<Ack, PublishError>> {
        let (tx, rx) = oneshot::channel();
        let data = serde_json::value::to_raw_value(&json!({ "n": n })).expect("raw");
        self.state
            .publish(room.into(), data, PublishOptions::default(), tx, self.now);
        rx
    }

    fn events(&mut self) -> Vec<Event> {
        let mut all = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(e) => all.push(e),
                Err(TryRecvError::Empty) => return all,
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    /// The offsets of the room messages delivered since the last call.
    fn delivered(&mut self) -> Vec<u64> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => m.offset,
                _ => None,
            })
            .collect()
    }
}

fn joined(room: &str, id: &Value, offset: u64, epoch: &str, recovered: Option<bool>) -> Value {
    let mut v = json!({"type":"joined","room":room,"id":id,"offset":offset,"epoch":epoch});
    if let Some(r) = recovered {
        v["recovered"] = json!(r);
    }
    v
}

#[test]
fn a_fresh_join_delivers_messages_around_joined_once() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let mut rx = h.join("r");
    let out = h.out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["type"], "join");
    assert!(out[0].get("since").is_none(), "{}", out[0]);
    // Messages may arrive before `joined`, on either side of its offset.
    h.message("r", 5);
    h.message("r", 6);
    h.frame(joined("r", &out[0]["id"], 5, "e1", None));
    let j = rx.try_recv().expect("answered").expect("joined");
    assert_eq!((j.offset, j.epoch.as_str()), (5, "e1"));
    h.message("r", 6);
    h.message("r", 7);
    assert_eq!(h.delivered(), [5, 6, 7]);
}

#[test]
fn a_reconnect_recovers_from_the_last_offset_and_skips_duplicates() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let _rx = h.join("r");
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 0, "e1", None));
    for o in 1..=3 {
        h.message("r", o);
    }
    h.state.disconnected();
    h.state.connected(h.now);
    let out = h.out();
    assert_eq!(out[0]["since"], json!({"offset":3,"epoch":"e1"}));
    // A replay that overlaps what was delivered is cut at the last offset.
    for o in 2..=5 {
        h.message("r", o);
    }
    h.frame(joined("r", &out[0]["id"], 5, "e1", Some(true)));
    h.message("r", 5);
    h.message("r", 6);
    assert_eq!(h.delivered(), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_gap_is_reported_and_live_messages_go_on() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let _rx = h.join("r");
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 0, "e1", None));
    h.message("r", 1);
    h.state.disconnected();
    h.state.connected(h.now);
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 9, "e1", Some(false)));
    h.message("r", 10);
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RecoveryFailed { room } if room == "r")),
        "{events:?}"
    );
    let offsets: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => m.offset,
            _ => None,
        })
        .collect();
    assert_eq!(offsets, [1, 10]);
    // A new epoch restarts the offsets: small ones are new messages.
    h.state.disconnected();
    h.state.connected(h.now);
    let out = h.out();
    assert_eq!(out[0]["since"], json!({"offset":10,"epoch":"e1"}));
    h.frame(joined("r", &out[0]["id"], 0, "e2", Some(false)));
    h.message("r", 1);
    assert_eq!(h.delivered(), [1]);
}

#[test]
fn publishes_wait_offline_in_order_and_overflow_hands_the_data_back() {
    let mut h = Harness::new(2);
    let _join = h.join("r");
    let mut a = h.publish("r", 1);
    let mut b = h.publish("r", 2);
    let mut c = h.publish("r", 3);
    match c.try_recv().expect("answered at once") {
        Err(PublishError::BufferFull { capacity, data }) => {
            assert_eq!((capacity, data), (2, json!({"n": 3})));
        }
        other => panic!("{other:?}"),
    }
    assert!(h.out().is_empty(), "nothing is sent while offline");
    h.state.connected(h.now);
    let out = h.out();
    let kinds: Vec<_> = out
        .iter()
        .map(|f| f["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["join", "publish", "publish"], "joins go first");
    assert_eq!(out[1]["data"], json!({"n": 1}));
    h.frame(json!({"type":"ack","id":out[1]["id"],"offset":7}));
    h.frame(json!({"type":"error","id":out[2]["id"],"code":"forbidden","message":"no"}));
    assert_eq!(a.try_recv().expect("acked").expect("ok").offset, Some(7));
    match b.try_recv().expect("answered") {
        Err(e) => assert_eq!(e.code(), Some("forbidden")),
        Ok(ack) => panic!("{ack:?}"),
    }
}

#[test]
fn a_withdrawn_buffered_publish_is_not_sent() {
    let mut h = Harness::new(4);
    let a = h.publish("r", 1);
    let _b = h.publish("r", 2);
    drop(a);
    h.state.connected(h.now);
    let out = h.out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["data"], json!({"n": 2}));
}

#[test]
fn in_flight_requests_fail_on_disconnect_and_on_timeout() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let mut lost = h.publish("r", 1);
    h.state.disconnected();
    assert!(matches!(
        lost.try_recv(),
        Ok(Err(PublishError::ConnectionLost))
    ));
    h.state.connected(h.now);
    let mut late = h.publish("r", 2);
    let id = h.out()[0]["id"].clone();
    h.state.expire(h.now + ACK - Duration::from_millis(1));
    assert!(late.try_recv().is_err(), "not yet");
    h.state.expire(h.now + ACK);
    assert!(matches!(late.try_recv(), Ok(Err(PublishError::Timeout(t))) if t == ACK));
    // A late ack matches nothing and changes nothing.
    h.frame(json!({"type":"ack","id":id,"offset":1}));
    assert_eq!(h.state.next_deadline(), None);
}

#[test]
fn error_codes_unknown_to_this_version_still_reject() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let mut rx = h.publish("r", 1);
    let id = h.out()[0]["id"].clone();
    h.frame(json!({"type":"error","id":id,"code":"brand_new","message":"later"}));
    match rx.try_recv() {
        Ok(Err(PublishError::Rejected(e))) => {
            assert_eq!((e.code.as_str(), e.kind()), ("brand_new", None));
        }
        other => panic!("{other:?}"),
    }
    h.frame(json!({"type":"error","code":"rate_limited","message":"slow down"}));
    let events = h.events();
    assert!(matches!(
        events.as_slice(),
        [Event::ServerError(e)] if e.kind() == Some(switchboard_protocol::ErrorCode::RateLimited)
    ));
}

#[test]
fn leave_cancels_a_pending_join_and_stops_delivery() {
    let mut h = Harness::new(4);
    let mut join = h.join("r");
    let (tx, mut left) = oneshot::channel();
    h.state.leave("r".into(), tx, h.now);
    assert!(matches!(join.try_recv(), Ok(Err(RequestError::Cancelled))));
    assert!(
        matches!(left.try_recv(), Ok(Ok(()))),
        "offline: done at once"
    );
    h.state.connected(h.now);
    assert!(h.out().is_empty(), "a left room is not rejoined");
    h.message("r", 1);
    assert!(h.delivered().is_empty());
}

#[test]
fn the_server_taking_a_room_away_is_an_event_and_the_room_is_not_rejoined() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let _rx = h.join("r");
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 0, "e1", None));
    h.frame(json!({"type":"left","room":"r"}));
    assert!(matches!(h.events().as_slice(), [Event::Left { room }] if room == "r"));
    h.state.disconnected();
    h.state.connected(h.now);
    assert!(h.out().is_empty());
}

#[test]
fn a_refused_rejoin_is_an_event() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let _rx = h.join("r");
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 0, "e1", None));
    h.state.disconnected();
    h.state.connected(h.now);
    let id = h.out()[0]["id"].clone();
    h.frame(json!({"type":"error","id":id,"code":"forbidden","message":"no"}));
    assert!(matches!(
        h.events().as_slice(),
        [Event::JoinFailed { room, error }] if room == "r" && error.code == "forbidden"
    ));
}

#[test]
fn stopping_fails_everything_that_waits() {
    let mut h = Harness::new(4);
    let mut join = h.join("r");
    let mut publish = h.publish("r", 1);
    h.state.stop(&StopReason::ClientClosed);
    assert!(matches!(
        join.try_recv(),
        Ok(Err(RequestError::Stopped(StopReason::ClientClosed)))
    ));
    assert!(matches!(
        publish.try_recv(),
        Ok(Err(PublishError::Stopped(StopReason::ClientClosed)))
    ));
}

#[test]
fn a_new_epoch_is_caught_up_from_its_start() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let _rx = h.join("r");
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 0, "e1", None));
    h.message("r", 1);
    h.state.disconnected();
    // The server restarted without its history: a new epoch, 5 messages in.
    h.state.connected(h.now);
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 5, "e2", Some(false)));
    let out = h.out();
    let kinds: Vec<_> = out
        .iter()
        .map(|f| f["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["leave", "join"]);
    assert_eq!(out[1]["since"], json!({"offset":0,"epoch":"e2"}));
    // Live messages before the `left` are in the replay that follows.
    h.message("r", 6);
    h.frame(json!({"type":"left","room":"r","id":out[0]["id"]}));
    for o in 1..=6 {
        h.message("r", o);
    }
    h.frame(joined("r", &out[1]["id"], 6, "e2", Some(true)));
    h.message("r", 7);
    let events = h.events();
    let failed = events
        .iter()
        .filter(|e| matches!(e, Event::RecoveryFailed { .. }))
        .count();
    assert_eq!(failed, 1);
    let offsets: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => m.offset,
            _ => None,
        })
        .collect();
    assert_eq!(
        offsets,
        [1, 1, 2, 3, 4, 5, 6, 7],
        "e1's 1, then e2 from its start"
    );
}

#[test]
fn a_reset_places_the_new_epochs_replay_in_one_round_trip() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let _rx = h.join("r");
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 0, "e1", None));
    for o in 1..=3 {
        h.message("r", o);
    }
    h.state.disconnected();
    h.state.connected(h.now);
    let out = h.out();
    assert_eq!(
        (&out[0]["since"], &out[0]["replay_new_epoch"]),
        (&json!({"offset": 3, "epoch": "e1"}), &json!(true)),
        "a rejoin asks for the new epoch's replay"
    );
    // The room restarted: e2 holds 2 messages, replayed after the reset,
    // though their offsets are below e1's last one.
    h.frame(json!({"type":"reset","room":"r","id":out[0]["id"],"epoch":"e2","offset":0}));
    h.message("r", 1);
    h.message("r", 2);
    h.frame(joined("r", &out[0]["id"], 2, "e2", Some(false)));
    assert!(h.out().is_empty(), "no leave, no second join");
    h.message("r", 3);
    let events = h.events();
    let failed = events
        .iter()
        .filter(|e| matches!(e, Event::RecoveryFailed { .. }))
        .count();
    assert_eq!(failed, 1, "{events:?}");
    let offsets: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => m.offset,
            _ => None,
        })
        .collect();
    assert_eq!(offsets, [1, 2, 3, 1, 2, 3], "e1's three, then e2's");
}

#[test]
fn a_catch_up_that_finds_a_gap_too_reports_the_loss_once() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let _rx = h.join("r");
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 0, "e1", None));
    h.state.disconnected();
    h.state.connected(h.now);
    let id = h.out()[0]["id"].clone();
    h.frame(joined("r", &id, 5000, "e2", Some(false)));
    let out = h.out();
    h.frame(json!({"type":"left","room":"r","id":out[0]["id"]}));
    // The new epoch outgrew the history: the catch-up finds a gap as well.
    h.frame(joined("r", &out[1]["id"], 5000, "e2", Some(false)));
    assert!(h.out().is_empty(), "no second catch-up");
    h.message("r", 5001);
    let events = h.events();
    let failed = events
        .iter()
        .filter(|e| matches!(e, Event::RecoveryFailed { .. }))
        .count();
    assert_eq!(failed, 1, "{events:?}");
    assert!(matches!(events.last(), Some(Event::Message(m)) if m.offset == Some(5001)));
}

fn rpc(h: &mut Harness, timeout: Option<Duration>) -> RpcRx {
    let (tx, rx) = oneshot::channel();
    let data = serde_json::value::to_raw_value(&json!({"a": 2})).expect("raw");
    h.state.rpc("add".into(), data, timeout, tx, h.now);
    rx
}

type RpcRx = oneshot::Receiver<Result<Box<RawValue>, RequestError>>;

#[test]
fn an_rpc_is_matched_by_id_to_its_result_or_error() {
    let mut h = Harness::new(4);
    let mut offline = rpc(&mut h, None);
    assert!(
        matches!(offline.try_recv(), Ok(Err(RequestError::NotConnected))),
        "not buffered"
    );
    h.state.connected(h.now);
    let mut first = rpc(&mut h, None);
    let mut second = rpc(&mut h, None);
    let out = h.out();
    assert_eq!(out.len(), 2);
    assert_eq!(
        (&out[0]["type"], &out[0]["method"], &out[0]["data"]),
        (&json!("rpc"), &json!("add"), &json!({"a": 2}))
    );
    // Answered out of order, each to its own caller, byte for byte.
    h.state.frame(
        &format!(
            r#"{{"type":"rpc_result","id":{},"data":{{"b": 1}}}}"#,
            out[1]["id"]
        ),
        h.now,
    );
    h.frame(json!({
        "type": "error", "id": out[0]["id"], "code": "refused",
        "message": "order 7 has shipped", "reason": "shipped",
    }));
    assert_eq!(
        second
            .try_recv()
            .expect("answered")
            .expect("a result")
            .get(),
        r#"{"b": 1}"#
    );
    match first.try_recv() {
        Ok(Err(e @ RequestError::Rejected(_))) => {
            assert_eq!((e.code(), e.reason()), (Some("refused"), Some("shipped")));
            assert_eq!(
                e.to_string(),
                "request refused: refused: order 7 has shipped (reason: shipped)"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.state.next_deadline(), None);
    assert!(h.events().is_empty());
}

#[test]
fn an_error_code_unknown_to_this_version_keeps_its_reason() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let mut rx = rpc(&mut h, None);
    let id = h.out()[0]["id"].clone();
    h.frame(json!({"type":"error","id":id,"code":"brand_new","message":"later","reason":"why"}));
    match rx.try_recv() {
        Ok(Err(RequestError::Rejected(e))) => {
            assert_eq!(
                (e.code.as_str(), e.message.as_str(), e.reason.as_deref()),
                ("brand_new", "later", Some("why"))
            );
        }
        other => panic!("{other:?}"),
    }
    // Without a reason, none.
    h.frame(json!({"type":"error","code":"rate_limited","message":"slow down"}));
    assert!(matches!(
        h.events().as_slice(),
        [Event::ServerError(e)] if e.reason.is_none()
    ));
}

#[test]
fn an_rpc_in_flight_fails_on_disconnect_timeout_and_stop_and_is_not_resent() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let mut lost = rpc(&mut h, None);
    h.state.disconnected();
    assert!(matches!(
        lost.try_recv(),
        Ok(Err(RequestError::ConnectionLost))
    ));
    h.state.connected(h.now);
    assert!(h.out().is_empty(), "an rpc is never sent again");

    // Its own timeout, reported as such; a late result matches nothing.
    let short = Duration::from_millis(300);
    let mut late = rpc(&mut h, Some(short));
    let mut normal = rpc(&mut h, None);
    let id = h.out()[0]["id"].clone();
    h.state.expire(h.now + short);
    assert!(matches!(late.try_recv(), Ok(Err(RequestError::Timeout(t))) if t == short));
    assert!(normal.try_recv().is_err(), "not yet");
    h.frame(json!({"type":"rpc_result","id":id,"data":1}));
    h.state.expire(h.now + ACK);
    assert!(matches!(normal.try_recv(), Ok(Err(RequestError::Timeout(t))) if t == ACK));

    // A timeout past what the clock can hold is never reached.
    let mut forever = rpc(&mut h, Some(Duration::MAX));
    h.state.expire(h.now + ACK * 1000);
    assert!(forever.try_recv().is_err(), "still waiting");
    h.state.stop(&StopReason::ClientClosed);
    assert!(matches!(
        forever.try_recv(),
        Ok(Err(RequestError::Stopped(StopReason::ClientClosed)))
    ));
}

#[test]
fn an_rpc_whose_caller_went_away_before_it_was_sent_is_not_sent() {
    let mut h = Harness::new(4);
    h.state.connected(h.now);
    let (tx, rx) = oneshot::channel();
    drop(rx);
    let data = serde_json::value::to_raw_value(&json!(null)).expect("raw");
    h.state.rpc("add".into(), data, None, tx, h.now);
    assert!(h.out().is_empty());
    assert_eq!(h.state.next_deadline(), None);
}
