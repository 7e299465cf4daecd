-- Per cap, each player's games in the bucket. game_share is the fraction of the bucket's
-- games the player is in (a player in every game has 1.0); share is the player's fraction
-- of all player appearances (two per game), which sums to 1 per cap and is the player
-- distribution whose entropy bucket_diversity reports.
WITH appearances AS (
    SELECT cap, white AS player, white_elo AS elo FROM {{ ref('bucket_games') }}
    UNION ALL
    SELECT cap, black AS player, black_elo AS elo FROM {{ ref('bucket_games') }}
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
    games / (sum(games) OVER (PARTITION BY cap) / 2) AS game_share,
    games / sum(games) OVER (PARTITION BY cap) AS share,
    mean_elo,
    max_elo
FROM per_player
