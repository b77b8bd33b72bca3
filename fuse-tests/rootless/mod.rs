//! Containers and mounts as users the tests create (subordinate ids, /dev/fuse 0666).

mod escape;
mod scenarios;
