-- Per cap, each player's games in the bucket. game_share is the fraction of the bucket's
-- games the player is in (a player in every game has 1.0); share is the player's fraction
-- of all player appearances, which sums to 1 per cap and is the player distribution whose
-- entropy bucket_diversity reports. A self-play game (the clone ablation: one player on both
-- sides) is one game and one appearance of that player, so its bucket has one player at share 1.
WITH appearances AS (
    SELECT cap, white AS player, white_elo AS elo FROM {{ ref('bucket_games') }}
    UNION ALL
    SELECT cap, black AS player, black_elo AS elo FROM {{ ref('bucket_games') }} WHERE black <> white
),
bucket_sizes AS (
    SELECT cap, count(*) AS bucket_games FROM {{ ref('bucket_games') }} GROUP BY cap
),
per_player AS (
    SELECT cap, player, count(*) AS games, avg(elo) AS mean_elo, max(elo) AS max_elo
    FROM appearances
    GROUP BY cap, player
)
SELECT
    cap,
    player,
    games,
    games / bucket_games AS game_share,
    games / sum(games) OVER (PARTITION BY cap) AS share,
    mean_elo,
    max_elo
FROM per_player
JOIN bucket_sizes USING (cap)
