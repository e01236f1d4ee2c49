//! The publishers of `fanout`: HTTP workers and a WebSocket publisher that
//! keep to a schedule of ticks, and the envelope around each payload.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::super::{Protocol, write_payload};
use crate::http::HttpClient;
use crate::stats::Latency;
use crate::target::Target;
use crate::ws::{Msg, WsClient};

use super::Publish;

#[derive(Default)]
pub(super) struct PubState {
    pub(super) attempted: u64,
    pub(super) sent: u64,
    pub(super) late: u64,
    pub(super) max_lag: Duration,
    pub(super) failures: BTreeMap<String, u64>,
    pub(super) publish_latency: Latency,
}

pub(super) struct Plan {
    pub(super) t0: Instant,
    pub(super) interval: Duration,
    pub(super) ticks: u64,
    pub(super) deadline: Instant,
    pub(super) base_seq: u64,
    pub(super) payload_bytes: usize,
}

impl Plan {
    pub(super) fn at(&self, i: u64) -> Instant {
        self.t0 + self.interval.mul_f64(i as f64)
    }

    /// Waits for tick `i`; `false` when it is past the deadline.
    pub(super) async fn wait_tick(&self, i: u64, st: &RefCell<PubState>) -> Option<Instant> {
        let sched = self.at(i);
        let now = Instant::now();
        if now >= self.deadline {
            return None;
        }
        if sched > now {
            tokio::time::sleep_until(sched.into()).await;
        } else {
            let lag = now - sched;
            let mut s = st.borrow_mut();
            if lag > self.interval.max(super::super::TIMER_SLACK) {
                s.late += 1;
            }
            s.max_lag = s.max_lag.max(lag);
        }
        Some(sched)
    }
}

/// What wraps the payload on the wire.
#[derive(Clone)]
pub(super) struct Envelope {
    pub(super) prefix: Vec<u8>,
    pub(super) suffix: &'static [u8],
}

impl Envelope {
    pub(super) fn new(protocol: Protocol, publish: Publish, room: &str) -> Envelope {
        match (protocol, publish) {
            (Protocol::Raw, _) => Envelope {
                prefix: Vec::new(),
                suffix: b"",
            },
            (Protocol::Switchboard, Publish::Http) => Envelope {
                prefix: b"{\"data\":".to_vec(),
                suffix: b"}",
            },
            (Protocol::Switchboard, Publish::Ws) => Envelope {
                prefix: format!(
                    "{{\"type\":\"publish\",\"room\":{},\"data\":",
                    serde_json::to_string(room).unwrap_or_default()
                )
                .into_bytes(),
                suffix: b"}",
            },
        }
    }

    pub(super) fn build(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        seq: u64,
        ts: u64,
        size: usize,
    ) {
        write_payload(scratch, seq, ts, size);
        out.clear();
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(scratch);
        out.extend_from_slice(self.suffix);
    }
}

pub(super) async fn http_worker(
    w: u64,
    k: u64,
    plan: Rc<Plan>,
    target: Target,
    src: Option<std::net::IpAddr>,
    env: Envelope,
    st: Rc<RefCell<PubState>>,
) {
    let mut client = HttpClient::new(target, src, Duration::from_secs(10));
    let (mut body, mut scratch) = (Vec::new(), Vec::new());
    let mut i = w;
    while i < plan.ticks {
        let Some(sched) = plan.wait_tick(i, &st).await else {
            break;
        };
        env.build(
            &mut body,
            &mut scratch,
            plan.base_seq + i,
            crate::clock::to_ns(sched),
            plan.payload_bytes,
        );
        st.borrow_mut().attempted += 1;
        let t = Instant::now();
        let r = client.post(&body).await;
        let mut s = st.borrow_mut();
        match r {
            Ok(status) if (200..300).contains(&status) => {
                s.sent += 1;
                s.publish_latency.record_ns(t.elapsed().as_nanos() as u64);
            }
            Ok(status) => *s.failures.entry(format!("http_{status}")).or_default() += 1,
            Err(e) => *s.failures.entry(crate::net::error_kind(&e)).or_default() += 1,
        }
        i += k;
    }
}

pub(super) async fn ws_publisher(
    mut ws: WsClient,
    plan: Rc<Plan>,
    env: Envelope,
    st: Rc<RefCell<PubState>>,
) -> Option<WsClient> {
    ws.set_auto_pong(false);
    let (mut body, mut scratch) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < plan.ticks {
        tokio::select! {
            biased;
            sched = plan.wait_tick(i, &st) => {
                let Some(sched) = sched else { break };
                env.build(&mut body, &mut scratch, plan.base_seq + i, crate::clock::to_ns(sched), plan.payload_bytes);
                st.borrow_mut().attempted += 1;
                let t = Instant::now();
                match ws.send_text(&body).await {
                    Ok(()) => {
                        let mut s = st.borrow_mut();
                        s.sent += 1;
                        s.publish_latency.record_ns(t.elapsed().as_nanos() as u64);
                    }
                    Err(e) => {
                        *st.borrow_mut().failures.entry(crate::net::error_kind(&e)).or_default() += 1;
                        return None;
                    }
                }
                i += 1;
            }
            r = ws.recv() => match r {
                // Acks, errors or (raw servers) our own broadcasts: ignore.
                Ok(Msg::Text | Msg::Binary) => {}
                _ => {
                    *st.borrow_mut().failures.entry(format!("publisher_closed_{}", super::super::end_label(&r))).or_default() += 1;
                    return None;
                }
            },
        }
    }
    Some(ws)
}
