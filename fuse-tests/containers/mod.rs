//! Images and containers as root: the verbs, records, confinement and the attack suite.

mod basics;
mod cli;
mod copytar;
mod escape;
mod exec;
mod habits;
mod health;
mod images;
mod lifecycle;
mod logging;
mod observe;
mod records;
mod reopen;
mod restart;
mod runflags;
mod security;
mod verbs;
mod volumes;
