//! The grpcurl command lines the README shows, run without grpcurl or proto files: the
//! descriptors come from the server's own gRPC reflection, as grpcurl gets them, the JSON request
//! becomes a dynamic message, and tonic's generic client makes the call.
//!
//! Flags understood: `-plaintext`, `-d JSON`, `-H 'key: value'` (repeatable); then the address
//! and `list [SERVICE]`, `describe [SYMBOL]` or a method (`pkg.Service/Method`). A
//! server-streaming method answers with its first message.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// One grpcurl command line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grpcurl {
    /// `-H` headers, in order.
    pub headers: Vec<(String, String)>,
    /// The `-d` request body; an empty message without it.
    pub data: Option<String>,
    /// The server, `HOST:PORT`.
    pub address: String,
    /// What to do there.
    pub action: Action,
}

/// What a grpcurl line asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `list`: the services, or one service's methods.
    List(Option<String>),
    /// `describe`: every service, or one symbol (service, method, message or enum).
    Describe(Option<String>),
    /// Call a method, `package.Service/Method`.
    Call { service: String, method: String },
}

impl Grpcurl {
    /// Parses the words of a grpcurl command line (the first word is `grpcurl`).
    pub fn parse(words: &[String]) -> Result<Grpcurl, String> {
        let mut words = words.iter().map(String::as_str);
        if words.next() != Some("grpcurl") {
            return Err("not a grpcurl command".into());
        }
        let mut plaintext = false;
        let mut headers = Vec::new();
        let mut data = None;
        let mut positional = Vec::new();
        while let Some(word) = words.next() {
            // grpcurl takes flags with one dash or two.
            match word.trim_start_matches('-') {
                _ if !word.starts_with('-') => positional.push(word),
                "plaintext" => plaintext = true,
                "d" => data = Some(words.next().ok_or("-d needs a value")?.to_owned()),
                "H" => {
                    let header = words.next().ok_or("-H needs a value")?;
                    let (key, value) =
                        header.split_once(':').ok_or_else(|| format!("-H {header:?} is not 'key: value'"))?;
                    headers.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
                other => return Err(format!("this test's grpcurl does not know the flag -{other}")),
            }
        }
        if !plaintext {
            return Err("the servers speak plaintext: the line needs -plaintext".into());
        }
        let mut positional = positional.into_iter();
        let address = positional.next().ok_or("no address")?.to_owned();
        let action = match positional.next() {
            Some("list") => Action::List(positional.next().map(str::to_owned)),
            Some("describe") => Action::Describe(positional.next().map(str::to_owned)),
            Some(method) => {
                let (service, method) = method
                    .rsplit_once(['/', '.'])
                    .ok_or_else(|| format!("{method:?} is not package.Service/Method"))?;
                Action::Call { service: service.to_owned(), method: method.to_owned() }
            }
            None => return Err("no method, list or describe".into()),
        };
        if let Some(extra) = positional.next() {
            return Err(format!("an unexpected word {extra:?}"));
        }
        Ok(Grpcurl { headers, data, address, action })
    }

    /// Runs the line against its server: what grpcurl would print, or why it would fail (a call
    /// answered with a status other than OK fails, with the code, message and error details).
    pub async fn run(&self) -> Result<String, String> {
        let channel = crate::process::channel(&self.address);
        let mut reflection = Reflection { client: ServerReflectionClient::new(channel.clone()) };
        match &self.action {
            Action::List(None) => Ok(reflection.services().await?.join("\n")),
            Action::List(Some(service)) => {
                let pool = reflection.pool_for(service).await?;
                let service = pool.get_service_by_name(service).ok_or_else(|| format!("no service {service}"))?;
                Ok(service.methods().map(|method| method.full_name().to_owned()).collect::<Vec<_>>().join("\n"))
            }
            Action::Describe(symbol) => {
                let symbols = match symbol {
                    Some(symbol) => vec![symbol.clone()],
                    None => reflection.services().await?,
                };
                let mut described = Vec::new();
                for symbol in symbols {
                    described.push(describe(&reflection.pool_for(&symbol).await?, &symbol)?);
                }
                Ok(described.join("\n"))
            }
            Action::Call { service, method } => {
                let pool = reflection.pool_for(service).await?;
                let method = pool
                    .get_service_by_name(service)
                    .ok_or_else(|| format!("the server has no service {service}"))?
                    .methods()
                    .find(|candidate| candidate.name() == method)
                    .ok_or_else(|| format!("{service} has no method {method}"))?;
                let request = self.request(&method)?;
                let answer = call(channel, &method, request).await.map_err(|status| describe_status(&status))?;
                let json = answer
                    .serialize_with_options(serde_json::value::Serializer, &prost_reflect::SerializeOptions::new())
                    .map_err(|error| format!("the answer does not print as JSON: {error}"))?;
                Ok(serde_json::to_string_pretty(&json).expect("JSON prints"))
            }
        }
    }

    /// The request message: `-d` decoded as protobuf JSON (enum names, lowerCamel or proto
    /// field names), with the `-H` headers.
    fn request(&self, method: &MethodDescriptor) -> Result<tonic::Request<DynamicMessage>, String> {
        let message = match &self.data {
            Some(json) => {
                let mut deserializer = serde_json::Deserializer::from_str(json);
                let message = DynamicMessage::deserialize(method.input(), &mut deserializer)
                    .map_err(|error| format!("-d is not a {}: {error}", method.input().full_name()))?;
                deserializer.end().map_err(|error| format!("-d has more than one message: {error}"))?;
                message
            }
            None => DynamicMessage::new(method.input()),
        };
        let mut request = tonic::Request::new(message);
        for (key, value) in &self.headers {
            let key = MetadataKey::from_str(key).map_err(|error| format!("header {key:?}: {error}"))?;
            let value =
                MetadataValue::try_from(value.as_str()).map_err(|error| format!("header {value:?}: {error}"))?;
            request.metadata_mut().insert(key, value);
        }
        Ok(request)
    }
}

/// The server's reflection service (v1), one request per stream.
struct Reflection {
    client: ServerReflectionClient<Channel>,
}

impl Reflection {
    async fn ask(&mut self, request: MessageRequest) -> Result<MessageResponse, String> {
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
        let mut answers = self
            .client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .map_err(|status| format!("reflection: {}", describe_status(&status)))?
            .into_inner();
        let answer = answers
            .message()
            .await
            .map_err(|status| format!("reflection: {}", describe_status(&status)))?
            .ok_or("reflection: the stream ended without an answer")?;
        match answer.message_response {
            Some(MessageResponse::ErrorResponse(error)) => {
                Err(format!("reflection: {} {}", Code::from(error.error_code), error.error_message))
            }
            Some(answer) => Ok(answer),
            None => Err("reflection: an empty answer".into()),
        }
    }

    /// The services the server names.
    async fn services(&mut self) -> Result<Vec<String>, String> {
        match self.ask(MessageRequest::ListServices(String::new())).await? {
            MessageResponse::ListServicesResponse(list) => {
                let mut names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
                names.sort();
                Ok(names)
            }
            other => Err(format!("reflection answered a list with {other:?}")),
        }
    }

    /// Every descriptor `symbol` needs: the file that defines it and, file by file, what it
    /// imports.
    async fn pool_for(&mut self, symbol: &str) -> Result<DescriptorPool, String> {
        // A method's symbol is its service's, as far as files go.
        let service = symbol.rsplit_once(['/']).map_or(symbol, |(service, _)| service);
        let mut files = BTreeMap::new();
        let mut wanted: Vec<MessageRequest> = vec![MessageRequest::FileContainingSymbol(service.to_owned())];
        let mut asked = BTreeSet::new();
        while let Some(request) = wanted.pop() {
            let MessageResponse::FileDescriptorResponse(answer) = self.ask(request).await? else {
                return Err("reflection answered a file request with something else".into());
            };
            for bytes in answer.file_descriptor_proto {
                let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())
                    .map_err(|error| format!("reflection sent a file that does not decode: {error}"))?;
                for dependency in &file.dependency {
                    if asked.insert(dependency.clone()) {
                        wanted.push(MessageRequest::FileByFilename(dependency.clone()));
                    }
                }
                files.insert(file.name().to_owned(), file);
            }
        }
        let mut pool = DescriptorPool::new();
        pool.add_file_descriptor_protos(files.into_values())
            .map_err(|error| format!("the server's descriptors do not fit together: {error}"))?;
        Ok(pool)
    }
}

/// `symbol` described in proto syntax, roughly as grpcurl does.
fn describe(pool: &DescriptorPool, symbol: &str) -> Result<String, String> {
    if let Some(service) = pool.get_service_by_name(symbol) {
        let mut text = format!("{symbol} is a service:\nservice {} {{\n", service.name());
        for method in service.methods() {
            text.push_str(&format!("  {};\n", signature(&method)));
        }
        text.push('}');
        return Ok(text);
    }
    if let Some((service, name)) = symbol.rsplit_once('.')
        && let Some(method) = pool.get_service_by_name(service).and_then(|s| s.methods().find(|m| m.name() == name))
    {
        return Ok(format!("{symbol} is a method:\n{};", signature(&method)));
    }
    if let Some(message) = pool.get_message_by_name(symbol) {
        let fields: Vec<String> = message
            .fields()
            .map(|field| format!("  {:?} {} = {};", field.kind(), field.name(), field.number()))
            .collect();
        return Ok(format!("{symbol} is a message:\nmessage {} {{\n{}\n}}", message.name(), fields.join("\n")));
    }
    if let Some(enumeration) = pool.get_enum_by_name(symbol) {
        let values: Vec<String> =
            enumeration.values().map(|value| format!("  {} = {};", value.name(), value.number())).collect();
        return Ok(format!("{symbol} is an enum:\nenum {} {{\n{}\n}}", enumeration.name(), values.join("\n")));
    }
    Err(format!("the server knows no symbol {symbol}"))
}

fn signature(method: &MethodDescriptor) -> String {
    let stream = |streaming: bool| if streaming { "stream " } else { "" };
    format!(
        "rpc {} ( {}.{} ) returns ( {}.{} )",
        method.name(),
        stream(method.is_client_streaming()),
        method.input().full_name(),
        stream(method.is_server_streaming()),
        method.output().full_name()
    )
}

/// Calls `method` with `request`: its answer, or the first message of a server stream.
async fn call(
    channel: Channel,
    method: &MethodDescriptor,
    request: tonic::Request<DynamicMessage>,
) -> Result<DynamicMessage, Status> {
    if method.is_client_streaming() {
        return Err(Status::unimplemented("this test's grpcurl sends no client streams"));
    }
    let path = PathAndQuery::from_str(&format!("/{}/{}", method.parent_service().full_name(), method.name()))
        .map_err(|error| Status::internal(error.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|error| Status::unavailable(format!("connecting: {error}")))?;
    let codec = DynamicCodec { output: method.output() };
    if method.is_server_streaming() {
        let mut stream = grpc.server_streaming(request, path, codec).await?.into_inner();
        stream.message().await?.ok_or_else(|| Status::unknown("the stream ended before its first message"))
    } else {
        Ok(grpc.unary(request, path, codec).await?.into_inner())
    }
}

/// A status as grpcurl prints it, with its `ErrorInfo` reason and metadata when it has one.
fn describe_status(status: &Status) -> String {
    use tonic_types::StatusExt;
    let mut text = format!("ERROR: Code: {:?} Message: {}", status.code(), status.message());
    if let Some(info) = status.get_details_error_info() {
        text.push_str(&format!(" (reason {}, domain {}, metadata {:?})", info.reason, info.domain, info.metadata));
    }
    text
}

/// Encodes dynamic messages; decodes them as `output`.
struct DynamicCodec {
    output: MessageDescriptor,
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> DynamicEncoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> DynamicDecoder {
        DynamicDecoder(self.output.clone())
    }
}

struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|error| Status::internal(format!("encoding the request: {error}")))
    }
}

struct DynamicDecoder(MessageDescriptor);

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|error| Status::internal(format!("decoding the answer: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Grpcurl, String> {
        Grpcurl::parse(&shlex::split(line).expect("balanced quotes"))
    }

    #[test]
    fn the_flags_the_readme_uses_parse() {
        let line = r#"grpcurl -plaintext -H 'leasehold-allow-non-leader: true' -d '{"priority": 10}' 127.0.0.1:7400 leasehold.v1.Cluster/SetPriority"#;
        assert_eq!(
            parse(line).unwrap(),
            Grpcurl {
                headers: vec![("leasehold-allow-non-leader".into(), "true".into())],
                data: Some(r#"{"priority": 10}"#.into()),
                address: "127.0.0.1:7400".into(),
                action: Action::Call { service: "leasehold.v1.Cluster".into(), method: "SetPriority".into() },
            }
        );
        assert_eq!(parse("grpcurl -plaintext 127.0.0.1:7400 list").unwrap().action, Action::List(None));
        assert_eq!(
            parse("grpcurl --plaintext 127.0.0.1:7400 describe leasehold.v1.Cluster").unwrap().action,
            Action::Describe(Some("leasehold.v1.Cluster".into()))
        );
        assert_eq!(
            parse("grpcurl -plaintext 127.0.0.1:7400 grpc.health.v1.Health.Check").unwrap().action,
            Action::Call { service: "grpc.health.v1.Health".into(), method: "Check".into() }
        );
    }

    #[test]
    fn what_it_cannot_do_is_refused_by_name() {
        assert!(parse("grpcurl 127.0.0.1:7400 list").unwrap_err().contains("-plaintext"));
        assert!(parse("grpcurl -plaintext -insecure 127.0.0.1:7400 list").unwrap_err().contains("-insecure"));
        assert!(parse("grpcurl -plaintext -H nocolon 127.0.0.1:7400 list").unwrap_err().contains("key: value"));
        assert!(parse("grpcurl -plaintext 127.0.0.1:7400").unwrap_err().contains("no method"));
    }
}
