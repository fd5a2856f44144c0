-- Landmarks as one compact row per published track, instead of one row per landmark.
--
-- Identification no longer queries PostgreSQL: the FingerprintShard actors hold the landmarks in
-- memory (audio/landmark_index.py) and load their partition from here when they start, which reads
-- a few hundred kilobytes per track instead of tens of thousands of rows. Publishing writes one row.
-- hashes: the landmarks' 32-bit hashes, big-endian (int4send's order), one after the other;
-- times: their anchor frames (int4, big-endian), aligned with hashes.
CREATE TABLE track_fingerprints (
    track_id  uuid PRIMARY KEY REFERENCES tracks (id) ON DELETE CASCADE,
    landmarks int NOT NULL CHECK (landmarks >= 0),
    hashes    bytea NOT NULL,
    times     bytea NOT NULL,
    CHECK (length(hashes) = 4 * landmarks AND length(times) = 4 * landmarks)
);
-- Hashes are near-random bytes: compressing them gains nothing and costs every shard load.
ALTER TABLE track_fingerprints ALTER COLUMN hashes SET STORAGE EXTERNAL, ALTER COLUMN times SET STORAGE EXTERNAL;

INSERT INTO track_fingerprints (track_id, landmarks, hashes, times)
SELECT track_id, count(*),
       string_agg(int4send(hash), ''::bytea ORDER BY t, hash),
       string_agg(int4send(t), ''::bytea ORDER BY t, hash)
FROM fingerprint_landmarks GROUP BY track_id;

DROP TABLE fingerprint_landmarks;
