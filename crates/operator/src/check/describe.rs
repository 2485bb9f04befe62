//! What the brokers say about topics and consumer groups, with the operations this client's
//! principal may perform on each (KIP-430's authorized operations): Kafka's DescribeTopics and
//! DescribeConsumerGroups, which the rdkafka crate does not wrap, through librdkafka's C API.
//! Nothing is produced, consumed or joined.
//!
//! The workspace's one module with `unsafe` (the lint is `deny` everywhere else): each call
//! below is librdkafka's documented use. Every handle is destroyed by an owner's `Drop`, and
//! everything read from a result is copied out before the event that owns it is destroyed.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka_sys::bindings as rd;

// The two calls that return an error code, declared here returning the plain integer that
// librdkafka returns: rdkafka-sys declares them returning a Rust enum, and a code newer than
// this librdkafka (Kafka 4's, say) would be an invalid value of it.
#[allow(clashing_extern_declarations)]
unsafe extern "C" {
    fn rd_kafka_event_error(rkev: *mut rd::rd_kafka_event_t) -> c_int;
    fn rd_kafka_error_code(error: *const rd::rd_kafka_error_t) -> c_int;
}

/// A code as rdkafka names it; `Unknown` for one this librdkafka does not know.
fn error_code(code: c_int) -> RDKafkaErrorCode {
    rd::rd_kafka_resp_err_t::try_from(code).map_or(RDKafkaErrorCode::Unknown, Into::into)
}

/// Why a describe request as a whole failed.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// librdkafka refused the request or its options.
    #[error("{0}")]
    Client(String),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The brokers answered the request with an error.
    #[error("{code}: {message}")]
    Broker {
        /// Kafka's error code.
        code: RDKafkaErrorCode,
        /// Its text.
        message: String,
    },
}

/// An error about one topic or group (its own, within an answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// Kafka's error code.
    pub code: RDKafkaErrorCode,
    /// Its text.
    pub message: String,
}

/// One topic as the brokers describe it.
#[derive(Debug, Clone)]
pub struct TopicDescription {
    /// Its name.
    pub name: String,
    /// Why it could not be described (does not exist, not authorized).
    pub error: Option<ItemError>,
    /// Its partitions.
    pub partitions: Vec<PartitionInfo>,
    /// The operations this principal may perform on it (`Read`, `Write`, `Describe`, ...);
    /// `None` when the brokers did not say.
    pub authorized: Option<Vec<&'static str>>,
}

/// One partition: how many replicas it has and how many are in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Its id.
    pub id: i32,
    /// Its replicas.
    pub replicas: usize,
    /// Of those, in sync.
    pub in_sync: usize,
}

/// One consumer group as the brokers describe it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Its id.
    pub name: String,
    /// Why it could not be described (not authorized).
    pub error: Option<ItemError>,
    /// The operations this principal may perform on it; `None` when the brokers did not say.
    pub authorized: Option<Vec<&'static str>>,
}

/// Describes `topics`, with the operations authorized on each.
pub fn topics<C: ClientContext>(
    client: &Client<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<TopicDescription>, DescribeError> {
    let names = c_strings(topics)?;
    let mut pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    // SAFETY: `pointers` holds `pointers.len()` valid C strings (`names` outlives the call);
    // the collection copies them.
    let collection = Owned::new(
        unsafe {
            rd::rd_kafka_TopicCollection_of_topic_names(pointers.as_mut_ptr(), pointers.len())
        },
        rd::rd_kafka_TopicCollection_destroy,
    )?;
    let event = request(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        timeout,
        // SAFETY: valid handle, collection, options and queue, all alive for the call.
        |rk, options, queue| unsafe {
            rd::rd_kafka_DescribeTopics(rk, collection.as_ptr(), options, queue);
        },
    )?;
    // SAFETY: `event` is a DescribeTopics result event (its error was checked); everything
    // read below is owned by it and copied before it is dropped.
    unsafe {
        let result = rd::rd_kafka_event_DescribeTopics_result(event.as_ptr());
        if result.is_null() {
            return Err(DescribeError::Client("not a DescribeTopics result".into()));
        }
        let mut count = 0;
        let items = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        let mut described = Vec::with_capacity(count);
        for &topic in slice(items, count) {
            let mut partitions_count = 0;
            let partitions = rd::rd_kafka_TopicDescription_partitions(topic, &mut partitions_count);
            let partitions = slice(partitions, partitions_count)
                .iter()
                .map(|&partition| {
                    let (mut replicas, mut in_sync) = (0, 0);
                    rd::rd_kafka_TopicPartitionInfo_replicas(partition, &mut replicas);
                    rd::rd_kafka_TopicPartitionInfo_isr(partition, &mut in_sync);
                    PartitionInfo {
                        id: rd::rd_kafka_TopicPartitionInfo_partition(partition),
                        replicas,
                        in_sync,
                    }
                })
                .collect();
            let mut operations = 0;
            let authorized =
                rd::rd_kafka_TopicDescription_authorized_operations(topic, &mut operations);
            described.push(TopicDescription {
                name: text(rd::rd_kafka_TopicDescription_name(topic)),
                error: item_error(rd::rd_kafka_TopicDescription_error(topic)),
                partitions,
                authorized: operation_names(authorized.cast(), operations),
            });
        }
        Ok(described)
    }
}

/// Describes consumer groups `groups`, with the operations authorized on each.
pub fn groups<C: ClientContext>(
    client: &Client<C>,
    groups: &[&str],
    timeout: Duration,
) -> Result<Vec<GroupDescription>, DescribeError> {
    let names = c_strings(groups)?;
    let mut pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let event = request(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
        timeout,
        // SAFETY: valid handle, options and queue; `pointers` holds valid C strings, copied.
        |rk, options, queue| unsafe {
            rd::rd_kafka_DescribeConsumerGroups(
                rk,
                pointers.as_mut_ptr(),
                pointers.len(),
                options,
                queue,
            );
        },
    )?;
    // SAFETY: as in `topics`, for a DescribeConsumerGroups result event.
    unsafe {
        let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event.as_ptr());
        if result.is_null() {
            return Err(DescribeError::Client(
                "not a DescribeConsumerGroups result".into(),
            ));
        }
        let mut count = 0;
        let items = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count);
        Ok(slice(items, count)
            .iter()
            .map(|&group| {
                let mut operations = 0;
                let authorized = rd::rd_kafka_ConsumerGroupDescription_authorized_operations(
                    group,
                    &mut operations,
                );
                GroupDescription {
                    name: text(rd::rd_kafka_ConsumerGroupDescription_group_id(group)),
                    error: item_error(rd::rd_kafka_ConsumerGroupDescription_error(group)),
                    authorized: operation_names(authorized.cast(), operations),
                }
            })
            .collect())
    }
}

/// An owned librdkafka object, destroyed on drop.
struct Owned<T> {
    pointer: NonNull<T>,
    destroy: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    fn new(pointer: *mut T, destroy: unsafe extern "C" fn(*mut T)) -> Result<Self, DescribeError> {
        NonNull::new(pointer)
            .map(|pointer| Self { pointer, destroy })
            .ok_or_else(|| DescribeError::Client("librdkafka returned no object".into()))
    }

    fn as_ptr(&self) -> *mut T {
        self.pointer.as_ptr()
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from librdkafka's constructor for this destructor, and is
        // destroyed once.
        unsafe { (self.destroy)(self.pointer.as_ptr()) }
    }
}

/// Sends one admin request with authorized operations asked for, and waits for its result
/// event (whose request-level error is checked).
fn request<C: ClientContext>(
    client: &Client<C>,
    operation: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    send: impl FnOnce(
        *mut rd::rd_kafka_t,
        *const rd::rd_kafka_AdminOptions_t,
        *mut rd::rd_kafka_queue_t,
    ),
) -> Result<Owned<rd::rd_kafka_event_t>, DescribeError> {
    let rk = client.native_ptr();
    let millis = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: `rk` is the live client's handle; the options and queue are owned below.
    unsafe {
        let options = Owned::new(
            rd::rd_kafka_AdminOptions_new(rk, operation),
            rd::rd_kafka_AdminOptions_destroy,
        )?;
        let refused =
            rd::rd_kafka_AdminOptions_set_include_authorized_operations(options.as_ptr(), 1);
        if !refused.is_null() {
            let message = text(rd::rd_kafka_error_string(refused));
            rd::rd_kafka_error_destroy(refused);
            return Err(DescribeError::Client(message));
        }
        let mut message = [0 as c_char; 512];
        let code = rd::rd_kafka_AdminOptions_set_request_timeout(
            options.as_ptr(),
            millis,
            message.as_mut_ptr(),
            message.len(),
        );
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(DescribeError::Client(text(message.as_ptr())));
        }
        let queue = Owned::new(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy)?;
        send(rk, options.as_ptr(), queue.as_ptr());
        // The request's own timeout answers first; this bound only guards against none.
        let waited = millis.saturating_add(5_000);
        let event = rd::rd_kafka_queue_poll(queue.as_ptr(), waited);
        let event = Owned::new(event, rd::rd_kafka_event_destroy).map_err(|_| {
            DescribeError::Timeout(Duration::from_millis(u64::try_from(waited).unwrap_or(0)))
        })?;
        let code = rd_kafka_event_error(event.as_ptr());
        if code != 0 {
            return Err(DescribeError::Broker {
                code: error_code(code),
                message: text(rd::rd_kafka_event_error_string(event.as_ptr())),
            });
        }
        Ok(event)
    }
}

fn c_strings(names: &[&str]) -> Result<Vec<CString>, DescribeError> {
    names
        .iter()
        .map(|name| CString::new(*name))
        .collect::<Result<_, _>>()
        .map_err(|_| DescribeError::Client("a name holds a NUL byte".into()))
}

/// `count` items from librdkafka's array `items` (empty when null).
///
/// # Safety
/// `items` is null or points at `count` initialised items that outlive the slice.
unsafe fn slice<'a, T>(items: *mut *const T, count: usize) -> &'a [*const T] {
    if items.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(items, count) }
}

/// A C string's text (lossy), empty for null.
///
/// # Safety
/// `pointer` is null or a NUL-terminated string.
unsafe fn text(pointer: *const c_char) -> String {
    if pointer.is_null() {
        return String::new();
    }
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(pointer) }
        .to_string_lossy()
        .into_owned()
}

/// An item's error, if any.
///
/// # Safety
/// `error` is null or a valid error object.
unsafe fn item_error(error: *const rd::rd_kafka_error_t) -> Option<ItemError> {
    if error.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    unsafe {
        Some(ItemError {
            code: error_code(rd_kafka_error_code(error)),
            message: text(rd::rd_kafka_error_string(error)),
        })
    }
}

/// The operations' names; `None` when the brokers did not report them (null list).
///
/// # Safety
/// `operations` is null or points at `count` values (read as integers: a value this version
/// does not know is kept as `Unknown`, never read as an invalid enum).
unsafe fn operation_names(operations: *const u32, count: usize) -> Option<Vec<&'static str>> {
    if operations.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    let values = unsafe { std::slice::from_raw_parts(operations, count) };
    Some(values.iter().map(|&value| operation_name(value)).collect())
}

/// Kafka's name of ACL operation `value` (librdkafka's `rd_kafka_AclOperation_t`).
fn operation_name(value: u32) -> &'static str {
    match value {
        2 => "All",
        3 => "Read",
        4 => "Write",
        5 => "Create",
        6 => "Delete",
        7 => "Alter",
        8 => "Describe",
        9 => "ClusterAction",
        10 => "DescribeConfigs",
        11 => "AlterConfigs",
        12 => "IdempotentWrite",
        _ => "Unknown",
    }
}
