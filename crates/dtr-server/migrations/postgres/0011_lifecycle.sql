-- The lifecycle table (dtr_proto::lifecycle) now says what each
-- transition does to the callback, and the store applies it in the
-- statement of the transition itself (store/transitions.rs): the trigger
-- that did so behind the code's back goes.
DROP TRIGGER IF EXISTS deferral_state_changed ON deferrals;
DROP FUNCTION IF EXISTS dtr_deferral_state_changed();
