-- Versions of the collaborative model (ml/training.py). A version is created `training` when a run is
-- asked for (so `POST /v1/admin/recommendations/train` can answer with it at once), becomes `ready` with
-- its artefact's key in the object store, or `failed` with the reason. Serving loads the newest ready one.
CREATE TABLE rec_models (
    version     bigserial PRIMARY KEY,
    state       text NOT NULL DEFAULT 'training' CHECK (state IN ('training', 'ready', 'failed')),
    artefact    text,
    trigger     text NOT NULL CHECK (trigger IN ('api', 'cli', 'schedule', 'test')),
    stats       jsonb,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX rec_models_ready ON rec_models (version DESC) WHERE state = 'ready';
