//! The registry of per-backend shared state, keyed by backend identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::backend::BackendShared;
use crate::model::BackendKey;
use crate::stats::PoolStats;

/// Hands out the shared state of each backend identity; entries whose backend
/// left every table are dropped on the next build.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<BackendKey, Weak<BackendShared>>>,
    /// Per-pool request statistics, by pool name, the same way.
    pools: Mutex<HashMap<String, Weak<PoolStats>>>,
}

impl Registry {
    pub fn get(&self, key: &BackendKey) -> Arc<BackendShared> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(key).and_then(Weak::upgrade) {
            return s;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(BackendShared::default());
        map.insert(key.clone(), Arc::downgrade(&s));
        s
    }

    /// The request statistics of pool `name` (the same `Arc` while any table has the pool).
    pub fn pool_stats(&self, name: &str) -> Arc<PoolStats> {
        let mut map = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(name).and_then(Weak::upgrade) {
            return s;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(PoolStats::default());
        map.insert(name.to_string(), Arc::downgrade(&s));
        s
    }
}
