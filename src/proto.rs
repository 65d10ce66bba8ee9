//! Generated protobuf types, quarantined here. The rest of the crate converts to and from
//! the domain types in `core` through `codec`, never passing these around.
#![allow(clippy::all, missing_docs, rustdoc::all)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/slawatch.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/slawatch.v1.serde.rs"));
}
