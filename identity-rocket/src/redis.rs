//! [`RedisStore`]: sessions in Redis, shared by every instance of an app (feature `redis`).

use crate::session::SessionBackend;
use async_trait::async_trait;
use fred::prelude::{Builder, Client, ClientLike, Config, HashesInterface, KeysInterface};
use identity_core::store::StoreError;
use std::time::Duration;

/// A [`SessionBackend`] in Redis: one hash per session (`identity:session:{id}`), one
/// field per part of the record, with an expiry renewed by every write. Several instances
/// of an app that share the Redis server (and `SESSION_SECRET`) serve any request of any
/// session. Selected by `session_store = "redis://host:6379"` (or `SESSION_STORE`).
///
/// Commands time out after 3 seconds; the client reconnects on its own when Redis comes
/// back. While Redis is down, pages that need the session answer with the error page
/// (HTTP 500), never a panic.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn backend(e: fred::error::Error) -> StoreError {
    StoreError(format!("Redis: {e}"))
}

impl RedisStore {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host:port[/db]`).
    /// Fails when the URL is wrong or the server cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config = Config::from_url(url)
            .map_err(|e| StoreError(format!("{url:?} is not a usable Redis URL: {e}")))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(3);
                c.internal_command_timeout = Duration::from_secs(3);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(3);
            })
            .set_policy(fred::types::config::ReconnectPolicy::new_exponential(
                0, 100, 5_000, 2,
            ))
            .build()
            .map_err(backend)?;
        client.init().await.map_err(|e| {
            StoreError(format!("cannot connect to Redis at {}: {e}", redacted(url)))
        })?;
        Ok(Self::from_client(client))
    }

    /// Uses a connected client (TLS, Sentinel, cluster, pools: whatever you configure).
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            prefix: "identity:session:".to_owned(),
        }
    }

    /// Prefixes the keys with `prefix` instead of `identity:session:` (several apps on one
    /// Redis database).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

#[async_trait]
impl SessionBackend for RedisStore {
    async fn get(&self, id: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.client.hget(self.key(id), key).await.map_err(backend)
    }

    async fn insert(
        &self,
        id: &str,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let k = self.key(id);
        let _: () = self.client.hset(&k, (key, value)).await.map_err(backend)?;
        let _: () = self
            .client
            .pexpire(&k, millis(ttl), None)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove(&self, id: &str, key: &str) -> Result<(), StoreError> {
        let _: () = self.client.hdel(self.key(id), key).await.map_err(backend)?;
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let _: () = self.client.del(self.key(id)).await.map_err(backend)?;
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str, ttl: Duration) -> Result<(), StoreError> {
        let (from, to) = (self.key(from), self.key(to));
        let exists: i64 = self.client.exists(&from).await.map_err(backend)?;
        if exists == 0 {
            return Ok(());
        }
        match self.client.rename::<(), _, _>(&from, &to).await {
            Ok(()) => {}
            // Expired between the two commands: nothing to move.
            Err(e) if e.to_string().contains("no such key") => return Ok(()),
            Err(e) => return Err(backend(e)),
        }
        let _: () = self
            .client
            .pexpire(&to, millis(ttl), None)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
