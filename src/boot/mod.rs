//! Network boot (the pxemanager seed): boot configs (ignition, kickstart, ... files), the
//! images each fits (an image's `boot-configs` in its catalog record), and hosts that boot an
//! image with a config. `book` is the stored set of configs and hosts, `validate` the rules
//! that tie them to images, `ipxe` the scripts and MAC addresses iPXE speaks in.

pub mod book;
pub mod ipxe;
pub mod validate;
