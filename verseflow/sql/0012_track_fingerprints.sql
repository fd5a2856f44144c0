-- Catalogue hashes as one compact row per published track, instead of one row per landmark.
--
-- Identification no longer queries PostgreSQL: the FingerprintShard actors hold the hashes in memory
-- (audio/landmark_index.py) and load their partition from here when they start, which reads one
-- row of a few hundred kilobytes per track instead of tens of thousands of rows. Publishing writes one row.
-- hashes: 32-bit triplet hashes (audio/fingerprint.py, Fingerprint.triplets), big-endian, one after
-- the other; times: their anchor frames (int4, big-endian), aligned with hashes.
CREATE TABLE track_fingerprints (
    track_id  uuid PRIMARY KEY REFERENCES tracks (id) ON DELETE CASCADE,
    landmarks int NOT NULL CHECK (landmarks >= 0),
    hashes    bytea NOT NULL,
    times     bytea NOT NULL,
    CHECK (length(hashes) = 4 * landmarks AND length(times) = 4 * landmarks)
);
-- Hashes are near-random bytes: compressing them gains nothing and costs every shard load.
ALTER TABLE track_fingerprints ALTER COLUMN hashes SET STORAGE EXTERNAL, ALTER COLUMN times SET STORAGE EXTERNAL;

-- The pair landmarks of the old lookup cannot serve triplet queries. They are derived data: tracks
-- published before this migration are fingerprinted again from their stored source when the platform
-- starts (actors/fingerprint_shard.py, index_unfingerprinted).
DROP TABLE fingerprint_landmarks;
