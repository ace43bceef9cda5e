//! Conformance suite: every case runs against every engine, so MemoryLog (the
//! model) and RocksLog (production) cannot drift apart. Style of tikv's
//! `engine_traits_tests`: cases are generic over an [`harness::Engine`] and a
//! macro instantiates them per engine.

#[path = "../common/mod.rs"]
mod common;

mod appends;
mod harness;
mod idempotency;
mod outbox;
mod reads;
mod records;

macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod memory {
            $( #[test] fn $case() { crate::$module::$case::<crate::harness::Memory>(); } )*
        }
        mod rocks {
            $( #[test] fn $case() { crate::$module::$case::<crate::harness::Rocks>(); } )*
        }
    };
}

conformance!(
    appends::sequences_start_at_one_and_are_gapless_per_channel,
    appends::timestamps_come_from_the_clock_and_never_go_backwards,
    appends::fan_out_reaches_every_recipient_including_sender,
    appends::repeated_recipients_get_one_pointer,
    appends::invalid_requests_store_nothing,
    appends::staged_writes_stay_invisible_until_published,
    appends::concurrent_appends_keep_every_inbox_gapless,
    idempotency::retry_across_batches_returns_first_result,
    idempotency::retry_within_a_batch_is_detected,
    idempotency::falling_ids_within_a_batch_are_told_apart,
    idempotency::client_ids_are_scoped_by_sender_and_device,
    idempotency::entries_expire_after_the_window,
    idempotency::retry_after_reopen_keeps_history_visible,
    idempotency::ids_below_the_devices_highest_are_still_checked,
    reads::empty_channel_and_inbox_read_as_empty,
    reads::history_pages_walk_both_directions,
    reads::history_page_boundaries_are_exact,
    reads::page_limit_is_capped,
    reads::inbox_pages_resolve_messages,
    records::cursors_only_move_forward,
    records::last_seen_only_moves_forward,
    records::read_marks_only_move_forward_per_channel,
    records::counters_continue_after_reopen,
    outbox::jobs_are_written_with_the_message,
    outbox::a_retried_message_writes_no_second_job,
    outbox::jobs_survive_a_reopen_until_removed,
    outbox::scan_pages_in_key_order,
);
