pub mod cyclonedx;
