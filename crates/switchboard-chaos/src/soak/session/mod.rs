//! One client connection of the soak, speaking `docs/protocol.md` and
//! checking every frame it gets: the offsets of each room it is in, of its
//! user stream and of the broadcasts must each go up by one (a hole is a
//! problem), every request gets its reply, nothing comes that was not
//! asked for, and the server never closes it. It ends the way the caller
//! says: a close handshake, a socket dropped with a FIN, or one reset with
//! an RST; and it can come back from where it was (`user_stream` and
//! `since`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::World;
use super::tally::{Tally, kind};

mod check;

/// The longest a connect, a `welcome` or a reply may take.
pub const STEP: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where a client stands in one stream: the last offset it received and
/// the epoch it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The last offset received.
    pub offset: u64,
    /// Its epoch.
    pub epoch: String,
}

impl Position {
    fn of(frame: &Value) -> Position {
        Position {
            offset: frame["offset"].as_u64().unwrap_or(0),
            epoch: frame["epoch"].as_str().unwrap_or_default().to_string(),
        }
    }
}

/// The endpoint a client connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws/chat`: rooms, user messages, broadcasts.
    Chat,
    /// `/ws/notifications`: user messages and broadcasts only.
    Notifications,
}

/// What a client asks of its user stream at the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserStream {
    /// Nothing: no `user_stream` parameter.
    None,
    /// `user_stream=new`.
    New,
    /// `user_stream=<offset>:<epoch>`: resume.
    Since(Position),
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A close frame, and the server's answer read to the end.
    Close,
    /// The socket dropped: a FIN, no close frame.
    Drop,
    /// The socket reset: an RST, no close frame.
    Reset,
}

/// Where a connection stood when it ended, to resume from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The endpoint it was on.
    pub chat: bool,
    /// Its user stream position, if it asked for one.
    pub user_stream: Option<Position>,
    /// The rooms it was in, with their positions and whether it watched
    /// their presence.
    pub rooms: Vec<(String, Position, bool)>,
}

/// A request waiting for its reply.
#[derive(Debug)]
enum Pending {
    Join {
        room: String,
        since: bool,
    },
    Leave {
        room: String,
    },
    Publish,
    Presence,
    /// A request whose answer must be an `error` frame.
    Refusal,
}

/// What reading one frame came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A frame was read and checked.
    Frame,
    /// The server closed the connection, or it dropped: counted as a
    /// problem; the session is over.
    Ended,
}

/// One connection. See the module docs.
pub struct Session {
    ws: Option<Ws>,
    world: Arc<World>,
    endpoint: Endpoint,
    /// The user the token names.
    pub user: String,
    /// The connection id `welcome` gave.
    pub conn: String,
    rooms: HashMap<String, Position>,
    watching: HashSet<String>,
    /// Rooms joined with `since` whose `joined` has not come: what comes
    /// for them until then is the replay.
    replaying: HashSet<String>,
    user_stream: Option<Position>,
    /// Follow the user messages' offsets from the first one (a connection
    /// that asked for no position).
    user_from_first: bool,
    /// User messages at or below this offset are the replay.
    user_replay_to: u64,
    broadcast: Option<u64>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects `user` through the load balancer with a token (in the
    /// `Authorization` header, or in the query when `in_query`) and reads
    /// the `welcome`. A failure is counted as a problem and returned.
    pub async fn open(
        world: &Arc<World>,
        endpoint: Endpoint,
        user: &str,
        stream: UserStream,
        in_query: bool,
    ) -> Result<Session, String> {
        let tally = world.tally.clone();
        let opened = Session::connect(world, endpoint, user, &stream, in_query).await;
        let (ws, welcome) = opened.inspect_err(|e| tally.problem(kind::FAILED_CONNECT, e))?;
        Tally::inc(&tally.opened);
        let mut session = Session {
            ws: Some(ws),
            world: world.clone(),
            endpoint,
            user: user.to_string(),
            conn: welcome["conn"].as_str().unwrap_or_default().to_string(),
            rooms: HashMap::new(),
            watching: HashSet::new(),
            replaying: HashSet::new(),
            user_stream: None,
            user_from_first: false,
            user_replay_to: 0,
            broadcast: None,
            pending: HashMap::new(),
            next_id: 0,
        };
        if welcome["user"] != user {
            tally.problem(
                kind::UNEXPECTED_FRAME,
                format!("welcome for another user: {welcome}"),
            );
        }
        let field = &welcome["user_stream"];
        match stream {
            UserStream::None => session.user_from_first = true,
            UserStream::New => match field["epoch"].as_str() {
                Some(_) => session.user_stream = Some(Position::of(field)),
                None => tally.problem(
                    kind::UNEXPECTED_FRAME,
                    format!("welcome without user_stream: {welcome}"),
                ),
            },
            UserStream::Since(from) => {
                let now = Position::of(field);
                let whole = field["recovered"] == true
                    && now.epoch == from.epoch
                    && field["replay_after"].as_u64() == Some(from.offset);
                if !whole {
                    tally.problem(
                        kind::NOT_RECOVERED,
                        format!("user stream from {from:?}: {welcome}"),
                    );
                }
                // The replay continues the old position; a hole in it is
                // counted like any other.
                session.user_replay_to = now.offset;
                session.user_stream = Some(if whole { from } else { now });
            }
        }
        Ok(session)
    }

    async fn connect(
        world: &World,
        endpoint: Endpoint,
        user: &str,
        stream: &UserStream,
        in_query: bool,
    ) -> Result<(Ws, Value), String> {
        let token = world.minter.token(user);
        let path = match endpoint {
            Endpoint::Chat => "/ws/chat",
            Endpoint::Notifications => "/ws/notifications",
        };
        let mut query = Vec::new();
        if in_query {
            query.push(format!("token={token}"));
        }
        match stream {
            UserStream::None => {}
            UserStream::New => query.push("user_stream=new".into()),
            UserStream::Since(p) => query.push(format!("user_stream={}:{}", p.offset, p.epoch)),
        }
        let mut url = format!("{}{path}", world.base);
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("{url}: {e}"))?;
        if !in_query {
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|e| format!("header: {e}"))?;
            request.headers_mut().insert("authorization", bearer);
        }
        let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| format!("{path}: no upgrade within {STEP:?}"))?
            .map_err(|e| format!("{path}: upgrade failed: {e}"))?;
        let first = tokio::time::timeout(STEP, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                    Some(Ok(Message::Close(close))) => return Err(format!("closed: {close:?}")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("end of stream".into()),
                }
            }
        })
        .await
        .map_err(|_| format!("{path} ({user}): no welcome within {STEP:?}"))?
        .map_err(|e| format!("{path} ({user}): no welcome: {e}"))?;
        match serde_json::from_str::<Value>(&first) {
            Ok(welcome) if welcome["type"] == "welcome" => Ok((ws, welcome)),
            _ => Err(format!("{path} ({user}): not a welcome first: {first}")),
        }
    }

    fn tally(&self) -> &Tally {
        &self.world.tally
    }

    /// The rooms it is in (joined, or being joined with `since`).
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// Sends `frame` with a new `id`, remembered as `pending`; its reply
    /// is checked when it comes.
    async fn request(&mut self, mut frame: Value, pending: Pending) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        frame["id"] = json!(id);
        self.pending.insert(id, pending);
        self.send(frame).await;
        id
    }

    async fn send(&mut self, frame: Value) {
        let Some(ws) = self.ws.as_mut() else {
            return;
        };
        // A failed send shows as the end of the stream on the next read.
        let _ = ws.send(Message::text(frame.to_string())).await;
    }

    /// Joins `room` (watching its presence when `presence`), from `since`
    /// when given, and waits for the `joined`.
    pub async fn join(&mut self, room: &str, presence: bool, since: Option<Position>) -> bool {
        let mut frame = json!({"type": "join", "room": room, "presence": presence});
        if presence {
            self.watching.insert(room.to_string());
        }
        let is_since = since.is_some();
        if let Some(since) = since {
            frame["since"] = json!({"offset": since.offset, "epoch": since.epoch});
            frame["replay_new_epoch"] = json!(true);
            self.rooms.insert(room.to_string(), since);
            self.replaying.insert(room.to_string());
        }
        let pending = Pending::Join {
            room: room.to_string(),
            since: is_since,
        };
        let id = self.request(frame, pending).await;
        self.wait(id).await
    }

    /// Leaves `room` and waits for the `left`.
    pub async fn leave(&mut self, room: &str) -> bool {
        let frame = json!({"type": "leave", "room": room});
        let pending = Pending::Leave {
            room: room.to_string(),
        };
        let id = self.request(frame, pending).await;
        self.wait(id).await
    }

    /// Leaves a room it is not in: the answer must be a `not_joined`
    /// error. Waits for it.
    pub async fn leave_not_joined(&mut self, room: &str) -> bool {
        let frame = json!({"type": "leave", "room": room});
        let id = self.request(frame, Pending::Refusal).await;
        self.wait(id).await
    }

    /// Publishes to `room` with an `id`; the `ack` is checked when it
    /// comes.
    pub async fn publish(&mut self, room: &str) {
        let data = json!({"from": self.conn, "n": self.next_id + 1});
        let frame = json!({"type": "publish", "room": room, "data": data});
        self.request(frame, Pending::Publish).await;
    }

    /// Asks who is in `room`; the reply is checked when it comes.
    pub async fn presence(&mut self, room: &str) {
        let frame = json!({"type": "presence", "room": room});
        self.request(frame, Pending::Presence).await;
    }

    /// Reads frames until request `id` is answered; false when the session
    /// ended or no reply came in time (counted).
    async fn wait(&mut self, id: u64) -> bool {
        let deadline = tokio::time::Instant::now() + STEP;
        while self.pending.contains_key(&id) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.next()).await {
                Ok(Next::Frame) => {}
                Ok(Next::Ended) => return false,
                Err(_) => {
                    let what = self.pending.remove(&id);
                    self.tally().problem(
                        kind::NO_REPLY,
                        format!("{}: no reply to {what:?}", self.conn),
                    );
                    return false;
                }
            }
        }
        true
    }

    /// Reads frames until every request is answered, for up to [`STEP`];
    /// what is still unanswered then is counted.
    pub async fn settle(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + STEP;
        while !self.pending.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.next()).await {
                Ok(Next::Frame) => {}
                Ok(Next::Ended) => return false,
                Err(_) => break,
            }
        }
        for (_, what) in self.pending.drain() {
            let kind = match what {
                Pending::Publish => kind::FAILED_PUBLISH,
                _ => kind::NO_REPLY,
            };
            self.world
                .tally
                .problem(kind, format!("{}: no reply to {what:?}", self.conn));
        }
        self.ws.is_some()
    }

    /// Reads frames for `time`; false when the session ended (counted).
    pub async fn pump(&mut self, time: Duration) -> bool {
        let until = tokio::time::Instant::now() + time;
        loop {
            match tokio::time::timeout_at(until, self.next()).await {
                Ok(Next::Frame) => {}
                Ok(Next::Ended) => return false,
                Err(_) => return true,
            }
        }
    }

    /// Reads and checks the next frame. Cancel-safe: nothing is read
    /// unless a whole frame came.
    pub async fn next(&mut self) -> Next {
        let Some(ws) = self.ws.as_mut() else {
            return Next::Ended;
        };
        let message = ws.next().await;
        match message {
            Some(Ok(Message::Text(text))) => {
                self.check(&text);
                Next::Frame
            }
            Some(Ok(Message::Close(close))) => {
                let code = close.map_or(1005, |c| u16::from(c.code));
                self.tally().problem(
                    kind::UNEXPECTED_CLOSE,
                    format!(
                        "{} ({}): closed by the server with {code}",
                        self.conn, self.user
                    ),
                );
                self.ws = None;
                Next::Ended
            }
            Some(Ok(_)) => Next::Frame,
            Some(Err(e)) => self.lost(e.to_string()),
            None => self.lost("end of stream".into()),
        }
    }

    fn lost(&mut self, why: String) -> Next {
        self.tally().problem(
            kind::UNEXPECTED_CLOSE,
            format!("{} ({}): connection lost: {why}", self.conn, self.user),
        );
        self.ws = None;
        Next::Ended
    }

    /// Where it stands now, to resume from.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            chat: self.endpoint == Endpoint::Chat,
            user_stream: self.user_stream.clone().filter(|p| !p.epoch.is_empty()),
            rooms: self
                .rooms
                .iter()
                .map(|(room, p)| (room.clone(), p.clone(), self.watching.contains(room)))
                .collect(),
        }
    }

    /// Ends the connection as `how` says and counts it.
    pub async fn end(mut self, how: Ending) {
        let Some(mut ws) = self.ws.take() else {
            return;
        };
        let tally = self.world.tally.clone();
        match how {
            Ending::Close => {
                let _ = ws.close(None).await;
                // The server answers the close, then ends the stream; what
                // it sent before is still checked.
                let answered = tokio::time::timeout(STEP, async {
                    let mut answered = false;
                    while let Some(Ok(message)) = ws.next().await {
                        match message {
                            Message::Text(text) => self.check(&text),
                            Message::Close(_) => answered = true,
                            _ => {}
                        }
                    }
                    answered
                })
                .await;
                if answered == Ok(true) {
                    Tally::inc(&tally.closed_clean);
                } else {
                    tally.problem(
                        kind::NO_REPLY,
                        format!("{}: the close was not answered: {answered:?}", self.conn),
                    );
                }
            }
            Ending::Drop => {
                drop(ws);
                Tally::inc(&tally.dropped);
            }
            Ending::Reset => {
                if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                    let _ = tcp.set_zero_linger();
                }
                drop(ws);
                Tally::inc(&tally.dropped);
            }
        }
    }
}
