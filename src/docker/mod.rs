//! Docker discovery: [`client`] is the only bollard user, [`desired`] turns a
//! listing into the desired state (pure), [`watcher`] keeps it current from
//! the events stream and re-listings.

pub mod client;
pub mod desired;
pub mod watcher;
