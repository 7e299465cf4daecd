{{ config(materialized='incremental_by_month') }}
-- Games that may enter a rating bucket, one month at a time.
-- max_elo is the larger of the two PRE-game ratings from the WhiteElo/BlackElo tags:
-- the rating each player brought to the board, which is what the paper caps on
-- (the post-game rating would leak the result into the bucket rule).
SELECT
    month,
    game_id,
    utc_time,
    speed,
    base_seconds,
    increment_seconds,
    white,
    black,
    white_title,
    black_title,
    white_elo,
    black_elo,
    greatest(white_elo, black_elo) AS max_elo,
    result,
    termination,
    eco,
    opening,
    moves,
    ply_count,
    has_clock,
    has_eval
FROM {{ source('games') }}
WHERE month = {{ this_month }}
    AND rated
    AND variant = 'Standard'
    AND white_elo IS NOT NULL
    AND black_elo IS NOT NULL
    AND result IN ('1-0', '0-1', '1/2-1/2')
    AND termination IS DISTINCT FROM 'Abandoned'
    AND ply_count >= {{ var('min_plies') }}
    AND NOT ({{ var('exclude_bots') }} AND 'BOT' IN (coalesce(white_title, ''), coalesce(black_title, '')))
