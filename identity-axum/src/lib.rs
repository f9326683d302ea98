//! Adapter crate: not implemented yet. See the workspace README for what works today.
