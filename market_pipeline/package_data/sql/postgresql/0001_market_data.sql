-- Market data: OHLCV bars and quant features, one row per (symbol, timeframe, bar time).
CREATE TABLE ohlcv_bars (
    symbol     TEXT NOT NULL,
    timeframe  TEXT NOT NULL,
    ts         TIMESTAMPTZ NOT NULL,
    open       DOUBLE PRECISION NOT NULL,
    high       DOUBLE PRECISION NOT NULL,
    low        DOUBLE PRECISION NOT NULL,
    close      DOUBLE PRECISION NOT NULL,
    volume     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts)
);

-- Feature columns are a contract (see market_pipeline/core/features.py). NULL where a value is
-- undefined (warm-up, flat prices, zero volume).
CREATE TABLE quant_features (
    symbol         TEXT NOT NULL,
    timeframe      TEXT NOT NULL,
    ts             TIMESTAMPTZ NOT NULL,
    simple_return  DOUBLE PRECISION,
    log_return     DOUBLE PRECISION,
    volatility_20  DOUBLE PRECISION,
    sma_20         DOUBLE PRECISION,
    sma_50         DOUBLE PRECISION,
    ema_12         DOUBLE PRECISION,
    ema_26         DOUBLE PRECISION,
    rsi_14         DOUBLE PRECISION,
    macd           DOUBLE PRECISION,
    macd_signal    DOUBLE PRECISION,
    macd_hist      DOUBLE PRECISION,
    bb_upper       DOUBLE PRECISION,
    bb_middle      DOUBLE PRECISION,
    bb_lower       DOUBLE PRECISION,
    atr_14         DOUBLE PRECISION,
    obv            DOUBLE PRECISION,
    vwap           DOUBLE PRECISION,
    zscore_20      DOUBLE PRECISION,
    PRIMARY KEY (symbol, timeframe, ts)
);

INSERT INTO schema_migrations (version, name) VALUES (1, '0001_market_data');
