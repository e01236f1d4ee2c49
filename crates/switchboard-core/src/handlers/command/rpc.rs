//! `rpc`: a question for the application, answered `rpc_result` with its
//! answer or `error` (see `docs/protocol.md#rpc`). Only an endpoint with
//! [`Hooks`](crate::hooks::Hooks) answers one.

use serde_json::value::RawValue;
use switchboard_protocol::server::{RpcResult, ServerFrame};

use crate::conn::Conn;
use crate::handlers::send_refusal;
use crate::hooks::Refusal;
use crate::json::Json;

/// Applies an `rpc` and queues `rpc_result` or an `error`.
pub(crate) async fn apply(conn: &mut Conn, method: &str, data: Option<&RawValue>, id: u64) {
    let Some(hooks) = conn.endpoint.hooks.clone() else {
        let refusal = Refusal::Unsupported("this endpoint answers no rpc".into());
        return send_refusal(conn, Some(id), &refusal);
    };
    let data = data.map_or_else(Json::null, Json::from_raw);
    match hooks.rpc(conn, method, &data).await {
        Ok(answer) => {
            let data = answer.to_raw();
            let _ = conn.send_frame(&ServerFrame::RpcResult(RpcResult { id, data }));
        }
        Err(refusal) => send_refusal(conn, Some(id), &refusal),
    }
}
