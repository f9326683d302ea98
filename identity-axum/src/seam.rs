//! identity-core's [`SessionStore`] over a tower-sessions [`Session`].

use async_trait::async_trait;
use identity_core::{SessionStore, StoreError};
use serde_json::Value;
use tower_sessions::Session;

/// The request's tower-sessions session, as the engine sees it.
pub(crate) struct Seam<'a>(pub(crate) &'a Session);

fn store_error(e: tower_sessions::session::Error) -> StoreError {
    StoreError(e.to_string())
}

#[async_trait]
impl SessionStore for Seam<'_> {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        // Values are JSON text: a page view copies a couple of strings, not trees.
        match self.0.get_value(key).await.map_err(store_error)? {
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Ok(Some(other.to_string())),
            None => Ok(None),
        }
    }

    async fn insert(&self, key: &str, value: String) -> Result<(), StoreError> {
        self.0
            .insert_value(key, Value::String(value))
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        // Removing a missing key would mark the session modified and save an empty record.
        if self.0.get_value(key).await.map_err(store_error)?.is_some() {
            self.0.remove_value(key).await.map_err(store_error)?;
        }
        Ok(())
    }

    async fn cycle_id(&self) -> Result<(), StoreError> {
        // A session without an id gets a fresh one when it is first saved.
        if self.0.id().is_some() {
            self.0.cycle_id().await.map_err(store_error)?;
        }
        Ok(())
    }

    async fn destroy(&self) -> Result<(), StoreError> {
        if self.0.id().is_some() {
            self.0.flush().await.map_err(store_error)?;
        }
        Ok(())
    }
}
