-- The pending gauge (count of pending deferrals per client, refreshed by
-- the background worker) walks this index in client order and reads
-- nothing else: without it, counting a million pending deferrals sorted
-- them in a temporary B-tree every time, a quarter of a second and tens
-- of MiB of memory the allocator kept afterwards.
CREATE INDEX deferrals_pending_by_client ON deferrals (state, client_id, expires_at);
