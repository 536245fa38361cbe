pub mod restart;
