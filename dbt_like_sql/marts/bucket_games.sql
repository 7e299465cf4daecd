-- One row per (cap, game) for every cap the game fits under: buckets nest, as in the paper.
-- The split comes from md5(game_id), not DuckDB's hash(), whose values may change between
-- DuckDB versions: a game keeps its split across reruns, months and caps, so the test games
-- of cap 1000 are test games of cap 1500 too. Moves stay in stg_games (join on game_id):
-- copying them into every nested bucket would triple the largest column.
WITH caps AS (
    SELECT unnest({{ var('caps') }}) AS cap
),
games AS (
    SELECT
        *,
        -- The first 8 hex digits of md5 as a uniform number in [0, 1).
        ('0x' || left(md5(game_id), 8))::UBIGINT / 4294967296.0 AS split_draw
    FROM {{ ref('stg_games') }}
)
SELECT
    caps.cap,
    games.month,
    games.game_id,
    games.white,
    games.black,
    games.white_elo,
    games.black_elo,
    games.max_elo,
    games.result,
    games.ply_count,
    CASE
        WHEN games.split_draw < {{ var('train_fraction') }} THEN 'train'
        WHEN games.split_draw < {{ var('train_fraction') }} + {{ var('val_fraction') }} THEN 'val'
        ELSE 'test'
    END AS split
FROM games
JOIN caps ON games.max_elo <= caps.cap
