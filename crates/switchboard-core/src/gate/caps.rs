//! Connection caps: in total, per client IP and per user.
//!
//! The gate reserves a slot before the handshake and the reservation is held
//! by the session; dropping it (when the connection ends, or when the
//! upgrade never completes) gives the slot back. Zero means "no cap".

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

/// The cap settings. Zero disables a cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// Open connections on this node. Default: 0 (none).
    pub total: usize,
    /// Open connections from one client IP. Default: 0 (none).
    pub per_ip: usize,
    /// Open connections of one user on this node. Default: 0 (none).
    pub per_user: usize,
}

/// Which cap was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapExceeded {
    /// The node is full.
    #[error("server connection limit reached")]
    Total,
    /// Too many connections from this address.
    #[error("too many connections from this address")]
    PerIp,
    /// Too many connections of this user.
    #[error("too many connections for this user")]
    PerUser,
}

/// Live counts behind the caps.
#[derive(Debug, Default)]
pub struct CapCounter {
    caps: Caps,
    total: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    per_user: DashMap<Arc<str>, usize>,
}

/// A held slot. Dropping it frees the slot.
#[derive(Debug)]
pub struct Reservation {
    counter: Arc<CapCounter>,
    ip: Option<IpAddr>,
    user: Option<Arc<str>>,
}

impl CapCounter {
    /// A counter enforcing `caps`.
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(CapCounter {
            caps,
            ..Default::default()
        })
    }

    /// Reserves a slot for a connection from `ip`, checking the total and
    /// per-IP caps. The per-user cap is checked by [`Reservation::add_user`]
    /// once the user is known.
    pub fn reserve(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Reservation, CapExceeded> {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        let mut r = Reservation {
            counter: self.clone(),
            ip: None,
            user: None,
        };
        if self.caps.total > 0 && total > self.caps.total {
            return Err(CapExceeded::Total);
        }
        if let Some(ip) = ip {
            let mut n = self.per_ip.entry(ip).or_insert(0);
            *n += 1;
            r.ip = Some(ip);
            if self.caps.per_ip > 0 && *n > self.caps.per_ip {
                return Err(CapExceeded::PerIp);
            }
        }
        Ok(r)
    }

    /// Open connections counted.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Reservation {
    /// Counts the connection against its user's cap.
    pub fn add_user(&mut self, user: &Arc<str>) -> Result<(), CapExceeded> {
        let c = &self.counter;
        let mut n = c.per_user.entry(user.clone()).or_insert(0);
        *n += 1;
        self.user = Some(user.clone());
        if c.caps.per_user > 0 && *n > c.caps.per_user {
            return Err(CapExceeded::PerUser);
        }
        Ok(())
    }
}

fn release<K: std::hash::Hash + Eq>(map: &DashMap<K, usize>, key: &K) {
    if let Some(mut n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
    }
    map.remove_if(key, |_, n| *n == 0);
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let c = &self.counter;
        c.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = &self.ip {
            release(&c.per_ip, ip);
        }
        if let Some(user) = &self.user {
            release(&c.per_user, user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_and_release() {
        let c = CapCounter::new(Caps {
            total: 3,
            per_ip: 2,
            per_user: 1,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let r1 = c.reserve(Some(a)).unwrap();
        let r2 = c.reserve(Some(a)).unwrap();
        assert_eq!(c.reserve(Some(a)).unwrap_err(), CapExceeded::PerIp);
        let mut r3 = c.reserve(Some(b)).unwrap();
        assert_eq!(c.reserve(Some(b)).unwrap_err(), CapExceeded::Total);
        let user: Arc<str> = Arc::from("ana");
        r3.add_user(&user).unwrap();
        let mut r1 = r1;
        assert_eq!(r1.add_user(&user).unwrap_err(), CapExceeded::PerUser);
        drop(r1);
        drop(r2);
        drop(r3);
        assert_eq!(c.total(), 0);
        assert!(c.per_ip.is_empty() && c.per_user.is_empty());
        c.reserve(Some(a)).unwrap().add_user(&user).unwrap();
    }
}
