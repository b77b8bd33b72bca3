//! The filesystem oracle: each scenario against kernel overlayfs and strata, compared.

mod atime;
mod churn;
mod corners;
mod data;
mod faults;
mod handles;
mod killpriv;
mod listed;
mod metacopy;
mod options;
mod seek;
mod semantics;
mod stress;
mod uring;
