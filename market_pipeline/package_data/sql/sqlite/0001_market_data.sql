-- Market data: OHLCV bars and quant features, one row per (symbol, timeframe, bar time).
CREATE TABLE ohlcv_bars (
    symbol     TEXT NOT NULL,
    timeframe  TEXT NOT NULL,
    ts         TEXT NOT NULL,
    open       REAL NOT NULL,
    high       REAL NOT NULL,
    low        REAL NOT NULL,
    close      REAL NOT NULL,
    volume     REAL NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts)
);

-- Feature columns are a contract (see market_pipeline/core/features.py). NULL where a value is
-- undefined (warm-up, flat prices, zero volume).
CREATE TABLE quant_features (
    symbol         TEXT NOT NULL,
    timeframe      TEXT NOT NULL,
    ts             TEXT NOT NULL,
    simple_return  REAL,
    log_return     REAL,
    volatility_20  REAL,
    sma_20         REAL,
    sma_50         REAL,
    ema_12         REAL,
    ema_26         REAL,
    rsi_14         REAL,
    macd           REAL,
    macd_signal    REAL,
    macd_hist      REAL,
    bb_upper       REAL,
    bb_middle      REAL,
    bb_lower       REAL,
    atr_14         REAL,
    obv            REAL,
    vwap           REAL,
    zscore_20      REAL,
    PRIMARY KEY (symbol, timeframe, ts)
);

INSERT INTO schema_migrations (version, name) VALUES (1, '0001_market_data');
