//! The Linux implementation of [`super::Hypervisor`] (being written).
