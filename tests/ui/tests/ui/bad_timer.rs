use basidia::prelude::*;

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[timer(interval = "soon")]
    async fn tick(&self) {}

    #[timer]
    async fn tock(&self) {}
}

fn main() {}
