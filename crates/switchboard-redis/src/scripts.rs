//! The Lua scripts. Each runs atomically in Redis; the client sends
//! `EVALSHA` and falls back to loading the script when Redis answers
//! `NOSCRIPT` (after a restart, say).
//!
//! Times come from Redis (`TIME`), never from a node, so nodes with skewed
//! clocks agree on ages and expiries. Every script that may create a room's
//! epoch also deletes the room's history: history from an earlier epoch is
//! never served under a new one.

use redis::Script;

/// `now_ms()`; `pop_oldest(hist_key, seq_key)` drops the oldest history
/// entry and takes its size off the sequence's `hbytes` count;
/// `trim_age(hist_key, seq_key, cutoff)` drops history entries older than
/// `cutoff`; `epoch(seq_key, hist_key, candidate, ttl)` creates the epoch
/// if absent and keeps the sequence alive for `ttl` ms.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function pop_oldest(hist, seq)
  local head = redis.call('LPOP', hist)
  if head then redis.call('HINCRBY', seq, 'hbytes', -#head) end
end
local function trim_age(hist, seq, cutoff)
  while true do
    local head = redis.call('LINDEX', hist, 0)
    if not head then return end
    local ts = tonumber(string.match(head, '^(%d+) '))
    if ts and ts >= cutoff then return end
    pop_oldest(hist, seq)
  end
end
local function epoch(seq_key, hist_key, candidate, ttl)
  if redis.call('HSETNX', seq_key, 'epoch', candidate) == 1 then
    redis.call('DEL', hist_key)
  end
  redis.call('PEXPIRE', seq_key, ttl)
  return redis.call('HGET', seq_key, 'epoch')
end
local function refresh_members(members_key, nodes_key, ttl, instance)
  local keep = 2 * tonumber(ttl)
  redis.call('PEXPIRE', members_key, keep)
  redis.call('ZADD', nodes_key, now_ms() + tonumber(ttl), instance)
  redis.call('PEXPIRE', nodes_key, keep)
end
"#;

/// Publish to a stream (a room, a user, the broadcasts). KEYS: seq, hist,
/// and the idempotency key's key when the publish has one. ARGV: channel,
/// tail, epoch candidate, history count, history age (ms), room ttl (ms),
/// history bytes, idempotency window (ms), the payload's format version
/// (`1`, or `2` when the tail names a connection to leave out), the kind
/// letter (`r`, `u` or `b`).
/// Returns `{offset, epoch, duplicate}`: for a key already used within the
/// window, nothing is published and the first publish's offset and epoch
/// come back with `duplicate` 1.
///
/// The sequence's `hbytes` field counts the bytes of the history entries;
/// it starts again at 0 whenever the history list is new (first use, new
/// epoch, expired). An entry larger than the byte limit on its own is not
/// kept, and the history is dropped: it no longer leads up to the current
/// offset.
const PUBLISH_ROOM: &str = r#"
if #KEYS == 3 then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local o, pe = string.match(prev, '^(%d+) (.+)$')
    return {tonumber(o), pe, 1}
  end
end
local e = epoch(KEYS[1], KEYS[2], ARGV[3], ARGV[6])
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local payload = ARGV[9] .. ARGV[10] .. string.format('%d', seq) .. ':' .. ARGV[2]
local count = tonumber(ARGV[4])
local max_bytes = tonumber(ARGV[7])
local now = now_ms()
local entry = string.format('%d', now) .. ' ' .. payload
if count > 0 and #entry <= max_bytes then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('HSET', KEYS[1], 'hbytes', 0)
  end
  redis.call('RPUSH', KEYS[2], entry)
  local bytes = redis.call('HINCRBY', KEYS[1], 'hbytes', #entry)
  while redis.call('LLEN', KEYS[2]) > count or bytes > max_bytes do
    pop_oldest(KEYS[2], KEYS[1])
    bytes = tonumber(redis.call('HGET', KEYS[1], 'hbytes'))
  end
  trim_age(KEYS[2], KEYS[1], now - tonumber(ARGV[5]))
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
  end
else
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'hbytes', 0)
end
redis.call('PUBLISH', ARGV[1], payload)
if #KEYS == 3 then
  redis.call('SET', KEYS[3], string.format('%d', seq) .. ' ' .. e, 'PX', ARGV[8])
end
return {seq, e, 0}
"#;

/// Publish to a room's presence once per idempotency
/// key. KEYS: the key's key. ARGV: channel, payload, window (ms). Returns 1
/// for a key already used within the window (nothing published), else 0.
const PUBLISH_ONCE: &str = r#"
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then return 1 end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 0
"#;

/// Room position. KEYS: seq, hist. ARGV: epoch candidate, room ttl (ms).
/// Returns `{offset, epoch}`.
const POSITION: &str = r#"
local e = epoch(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return {tonumber(redis.call('HGET', KEYS[1], 'seq') or '0'), e}
"#;

/// Recovery. KEYS: seq, hist. ARGV: since epoch, since offset, epoch
/// candidate, history age (ms), room ttl (ms). Returns
/// `{found, offset, epoch, entries}` where `found` is 1 for recovered
/// (entries are the history items after `since`) and 0 for a gap.
const RECOVER: &str = r#"
local e = epoch(KEYS[1], KEYS[2], ARGV[3], ARGV[5])
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local since = tonumber(ARGV[2])
if e ~= ARGV[1] or since > seq then return {0, seq, e} end
if since == seq then return {1, seq, e, {}} end
trim_age(KEYS[2], KEYS[1], now_ms() - tonumber(ARGV[4]))
local head = redis.call('LINDEX', KEYS[2], 0)
if not head then return {0, seq, e} end
local first = tonumber(string.match(head, '^%d+ %d%a(%d+):'))
if not first or since + 1 < first then return {0, seq, e} end
return {1, seq, e, redis.call('LRANGE', KEYS[2], since + 1 - first, -1)}
"#;

/// Adds one presence entry. KEYS: members, member-nodes. ARGV: conn, user,
/// ttl (ms), instance.
const PRESENCE_ADD: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
refresh_members(KEYS[1], KEYS[2], ARGV[3], ARGV[4])
return 1
"#;

/// Removes one presence entry. KEYS: members, member-nodes. ARGV: conn,
/// instance.
const PRESENCE_REMOVE: &str = r#"
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
"#;

/// Keeps a node's entries alive. KEYS: members, member-nodes. ARGV: ttl
/// (ms), instance. Returns 0 when the entries are gone (expired, or Redis
/// restarted) and must be written again.
const PRESENCE_TOUCH: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
refresh_members(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return 1
"#;

/// Rewrites a node's entries of one room. KEYS: members, member-nodes.
/// ARGV: ttl (ms), instance, presence channel, then conn, user pairs.
/// Announces as joining every connection Redis did not have: it was
/// announced as leaving if another node took this one for dead (see
/// `PRESENCE_REAP`).
const PRESENCE_WRITE: &str = r#"
local missing = {}
for i = 4, #ARGV, 2 do
  missing[i] = redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0
end
redis.call('DEL', KEYS[1])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if missing[i] then presence_event(ARGV[3], 'join', ARGV[i + 1], ARGV[i]) end
end
if #ARGV > 3 then
  refresh_members(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
else
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
"#;

/// Reads a room's presence. KEYS: member-nodes. ARGV: members key prefix
/// and suffix around the instance id. Returns the user of every connection
/// of every live node. Expired nodes are skipped but left in the index for
/// `PRESENCE_REAP` to announce. (It reads keys it was not passed, which a
/// Redis Cluster would refuse.)
const PRESENCE_READ: &str = r#"
local out = {}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', now_ms()), '+inf')
for _, node in ipairs(live) do
  for _, user in ipairs(redis.call('HVALS', ARGV[1] .. node .. ARGV[2])) do
    out[#out + 1] = user
  end
end
return out
"#;

/// `presence_event(channel, event, user, conn)` publishes a presence event
/// as a node does (codec kind `p`, no offset, no publisher), with the JSON
/// text `serde_json` writes for it: keys sorted, the same escapes.
const PRESENCE_EVENT: &str = r#"
local escapes = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
local function json_string(s)
  local quoted = string.gsub(s, '[%z\1-\31"\\]', function(c)
    return escapes[c] or string.format('\\u%04x', string.byte(c))
  end)
  return '"' .. quoted .. '"'
end
local function presence_event(channel, event, user, conn)
  redis.call('PUBLISH', channel, '1p::{"conn":' .. json_string(conn) ..
    ',"event":"' .. event .. '","user":' .. json_string(user) .. '}')
end
"#;

/// Claims the nodes of a room whose entries expired, other than the
/// caller, and announces their connections as leaving. KEYS: member-nodes.
/// ARGV: members key prefix and suffix around the instance id, presence
/// channel, the caller's instance. Returns how many leaves it announced.
/// Atomic: a claimed node's entries are deleted with it, so however many
/// nodes run this, each leave is announced once. (Like `PRESENCE_READ`, it
/// touches keys it was not passed.)
const PRESENCE_REAP: &str = r#"
local n = 0
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms())) do
  if node ~= ARGV[4] then
    local key = ARGV[1] .. node .. ARGV[2]
    local entries = redis.call('HGETALL', key)
    for i = 1, #entries, 2 do
      presence_event(ARGV[3], 'leave', entries[i + 1], entries[i])
    end
    n = n + #entries / 2
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], node)
  end
end
return n
"#;

/// The loaded scripts.
pub(crate) struct Scripts {
    pub(crate) publish_room: Script,
    pub(crate) publish_once: Script,
    pub(crate) position: Script,
    pub(crate) recover: Script,
    pub(crate) presence_add: Script,
    pub(crate) presence_remove: Script,
    pub(crate) presence_touch: Script,
    pub(crate) presence_write: Script,
    pub(crate) presence_read: Script,
    pub(crate) presence_reap: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            publish_room: s(PUBLISH_ROOM),
            publish_once: s(PUBLISH_ONCE),
            position: s(POSITION),
            recover: s(RECOVER),
            presence_add: s(PRESENCE_ADD),
            presence_remove: s(PRESENCE_REMOVE),
            presence_touch: s(PRESENCE_TOUCH),
            presence_write: s(&format!("{PRESENCE_EVENT}{PRESENCE_WRITE}")),
            presence_read: s(PRESENCE_READ),
            presence_reap: s(&format!("{PRESENCE_EVENT}{PRESENCE_REAP}")),
        }
    }
}
