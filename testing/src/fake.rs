//! Fake services: canned answers and a record of calls, served on a memory broker so that a
//! typed client reaches them exactly as it would reach the real service.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use basidia_core::{
    Arguments, Client, EncodedReply, Error, MethodDescription, RemoteError, RpcProxy, Runner,
    RunningServices, Service, ServiceDescription, SharedBroker,
};
use basidia_memory::MemoryBroker;

/// One call a fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeCall {
    /// The method.
    pub method: String,
    /// Positional arguments.
    pub args: Vec<serde_json::Value>,
    /// Keyword arguments.
    pub kwargs: BTreeMap<String, serde_json::Value>,
}

type Handler = Box<dyn Fn(&FakeCall) -> Result<serde_json::Value, RemoteError> + Send + Sync>;

/// A stand-in service with canned answers. It is a hand-written [`Service`].
pub struct FakeService {
    name: String,
    handlers: HashMap<String, Handler>,
    calls: Arc<Mutex<Vec<FakeCall>>>,
}

impl std::fmt::Debug for FakeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeService")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl FakeService {
    /// A fake of the service `name` with no methods yet.
    pub fn new(name: &str) -> Self {
        FakeService {
            name: name.to_string(),
            handlers: HashMap::new(),
            calls: Arc::default(),
        }
    }

    /// A fake of the service a client type calls.
    pub fn of<C: Client>() -> Self {
        Self::new(C::SERVICE)
    }

    /// `method` answers with `value`.
    pub fn returning(self, method: &str, value: serde_json::Value) -> Self {
        self.handler(method, move |_| Ok(value.clone()))
    }

    /// `method` answers with the error `error`.
    pub fn failing(self, method: &str, error: RemoteError) -> Self {
        self.handler(method, move |_| Err(error.clone()))
    }

    /// `method` answers with what `f` computes from the call.
    pub fn handler<F>(mut self, method: &str, f: F) -> Self
    where
        F: Fn(&FakeCall) -> Result<serde_json::Value, RemoteError> + Send + Sync + 'static,
    {
        self.handlers.insert(method.to_string(), Box::new(f));
        self
    }

    /// Serves the fake on a private memory broker.
    pub async fn serve(self) -> Result<RunningFake, Error> {
        self.serve_on(MemoryBroker::new()).await
    }

    /// Serves the fake on the given memory broker.
    pub async fn serve_on(self, broker: MemoryBroker) -> Result<RunningFake, Error> {
        let calls = Arc::clone(&self.calls);
        let shared: SharedBroker = Arc::new(broker.clone());
        let mut runner = Runner::new(shared);
        runner.add_instance(self);
        let running = runner.start().await?;
        Ok(RunningFake {
            broker,
            running,
            calls,
        })
    }
}

#[async_trait]
impl Service for FakeService {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> ServiceDescription {
        let mut rpc: Vec<MethodDescription> = self
            .handlers
            .keys()
            .map(|m| MethodDescription {
                name: m.clone(),
                params: Vec::new(),
                returns: "json".into(),
                returns_schema: None,
                doc: "fake".into(),
                roles: Vec::new(),
            })
            .collect();
        rpc.sort_by(|a, b| a.name.cmp(&b.name));
        ServiceDescription {
            name: self.name.clone(),
            rpc,
            ..ServiceDescription::default()
        }
    }

    async fn handle_rpc(&self, method: &str, args: Arguments) -> Result<EncodedReply, RemoteError> {
        let format = args.format();
        let Some(handler) = self.handlers.get(method) else {
            return Err(RemoteError::method_not_found(&self.name, method));
        };
        let (args, kwargs) = args.into_values()?;
        let call = FakeCall {
            method: method.to_string(),
            args: args
                .iter()
                .map(basidia_serializers::value_to_json)
                .collect(),
            kwargs: kwargs
                .iter()
                .map(|(k, v)| (k.clone(), basidia_serializers::value_to_json(v)))
                .collect(),
        };
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call.clone());
        let value = handler(&call)?;
        basidia_core::private::reply_ok(format, &value)
    }
}

/// A fake being served.
pub struct RunningFake {
    broker: MemoryBroker,
    running: RunningServices,
    calls: Arc<Mutex<Vec<FakeCall>>>,
}

impl std::fmt::Debug for RunningFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningFake").finish_non_exhaustive()
    }
}

impl RunningFake {
    /// A typed client that reaches the fake.
    pub fn client<C: Client>(&self) -> C {
        C::connect(&RpcProxy::new(Arc::new(self.broker.connect())))
    }

    /// The calls received so far.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}
