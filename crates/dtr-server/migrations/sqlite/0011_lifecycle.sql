-- The lifecycle table (dtr_proto::lifecycle) now says what each
-- transition does to the callback, and the store applies it in the
-- transaction of the transition itself (store/transitions.rs): the
-- triggers that did so behind the code's back go.
DROP TRIGGER IF EXISTS deferral_resolved_enqueue_callback;
DROP TRIGGER IF EXISTS deferral_finished_suppress_callback;
