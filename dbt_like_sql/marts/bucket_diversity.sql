-- Per cap: how many games and players a bucket holds and how diverse they are (design §6).
-- player_entropy is the entropy of the player distribution (bucket_players.share) over
-- log(players): 1 when every player appears equally often, 0 when one player is everyone.
-- opening_entropy is the paper's measure: over opening positions (plies 0..opening_max_ply)
-- visited at least opening_min_visits times, the mean normalised entropy of the moves
-- played there (entropy / log(distinct moves), 0 where one move is always played).
-- A position is identified by the move prefix that reached it: a prefix determines the
-- position exactly and needs no board replay, so this stays one SQL pass; transpositions
-- (two move orders to the same board) count as separate positions. The paper keyed on FEN
-- with move counters, which merges only same-ply transpositions; opening trees transpose rarely.
WITH caps AS (
    SELECT unnest({{ var('caps') }}) AS cap
),
bucket_sizes AS (
    SELECT
        cap,
        count(*) AS games,
        max(max_elo) AS max_elo,
        count(*) FILTER (WHERE split = 'train') AS train_games,
        count(*) FILTER (WHERE split = 'val') AS val_games,
        count(*) FILTER (WHERE split = 'test') AS test_games
    FROM {{ ref('bucket_games') }}
    GROUP BY cap
),
players AS (
    SELECT
        cap,
        count(*) AS players,
        arg_max(player, game_share) AS top_player,
        max(game_share) AS top_player_share,
        CASE WHEN count(*) > 1 THEN -sum(share * ln(share)) / ln(count(*)) ELSE 0 END AS player_entropy
    FROM {{ ref('bucket_players') }}
    GROUP BY cap
),
-- The paper measured openings on the first 500,000 games of each bucket. Each cap here takes
-- a deterministic sample of about opening_sample_games games (md5 digits independent of the
-- split's): the visit threshold makes the metric depend on the number of games, so caps stay
-- comparable, and the cost stays flat however many months accumulate.
opening_games AS (
    SELECT bucket.cap, stg.moves
    FROM {{ ref('bucket_games') }} AS bucket
    JOIN bucket_sizes USING (cap)
    JOIN {{ ref('stg_games') }} AS stg USING (game_id)
    WHERE ('0x' || substr(md5(bucket.game_id), 9, 8))::UBIGINT / 4294967296.0
        < {{ var('opening_sample_games') }} / bucket_sizes.games
),
-- Positions are keyed by a 64-bit hash of the prefix, far cheaper to group than the list itself;
-- at tens of millions of distinct prefixes a collision has odds of about 1 in 10^5, and it would
-- merge two positions' move counts. DuckDB's hash() may change between versions, which is
-- harmless here: the key lives only inside this query.
opening_moves AS (
    SELECT cap, hash(moves[1:ply]) AS position, moves[ply + 1] AS move, count(*) AS visits
    FROM (
        SELECT cap, moves, unnest(range(least(len(moves), {{ var('opening_max_ply') }} + 1))) AS ply
        FROM opening_games
    )
    GROUP BY ALL
),
positions AS (
    SELECT
        cap,
        sum(visits) AS visits,
        count(*) AS distinct_moves,
        -- -sum(p ln p) with p = v / V, written as ln V - sum(v ln v) / V
        ln(sum(visits)) - sum(visits * ln(visits)) / sum(visits) AS move_entropy
    FROM opening_moves
    GROUP BY cap, position
),
opening_sizes AS (
    SELECT cap, count(*) AS opening_games FROM opening_games GROUP BY cap
),
openings AS (
    SELECT
        cap,
        count(*) AS opening_positions,
        avg(CASE WHEN distinct_moves > 1 THEN move_entropy / ln(distinct_moves) ELSE 0 END) AS opening_entropy
    FROM positions
    WHERE visits >= {{ var('opening_min_visits') }}
    GROUP BY cap
)
SELECT
    caps.cap,
    coalesce(bucket_sizes.games, 0) AS games,
    coalesce(players.players, 0) AS players,
    players.top_player,
    players.top_player_share,
    players.player_entropy,
    bucket_sizes.max_elo,
    coalesce(bucket_sizes.train_games, 0) AS train_games,
    coalesce(bucket_sizes.val_games, 0) AS val_games,
    coalesce(bucket_sizes.test_games, 0) AS test_games,
    coalesce(opening_sizes.opening_games, 0) AS opening_games,
    coalesce(openings.opening_positions, 0) AS opening_positions,
    openings.opening_entropy
FROM caps
LEFT JOIN bucket_sizes USING (cap)
LEFT JOIN players USING (cap)
LEFT JOIN opening_sizes USING (cap)
LEFT JOIN openings USING (cap)
ORDER BY caps.cap
