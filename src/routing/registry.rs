//! The registry of per-backend shared state, keyed by backend identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::backend::BackendShared;
use crate::model::BackendKey;

/// Hands out the shared state of each backend identity; entries whose backend
/// left every table are dropped on the next build.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<BackendKey, Weak<BackendShared>>>,
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
}
