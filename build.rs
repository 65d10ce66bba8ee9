//! Generates the protobuf types (prost) and their proto3 canonical JSON mapping (pbjson)
//! from proto/ with protox, a pure-Rust protobuf compiler, so no system `protoc` is needed.
use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/slawatch/v1/conversation.proto",
    "proto/slawatch/v1/sla.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("slawatch_descriptor.bin");

    let file_descriptors = protox::compile(PROTOS, ["proto"])?;
    let encoded = prost::Message::encode_to_vec(&file_descriptors);
    std::fs::write(&descriptor_path, &encoded)?;

    let mut config = prost_build::Config::new();
    config
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .skip_protoc_run();
    config.compile_fds(file_descriptors)?;

    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .ignore_unknown_fields()
        .ignore_unknown_enum_variants()
        .build(&[".slawatch"])?;
    Ok(())
}
