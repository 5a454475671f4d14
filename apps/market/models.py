"""Market intelligence: candles, news, social sentiment, and the insights the analysis draws from them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class Timeframe(models.TextChoices):
    M1 = "1m", "1 minute"
    M5 = "5m", "5 minutes"
    M15 = "15m", "15 minutes"
    H1 = "1h", "1 hour"
    H4 = "4h", "4 hours"
    D1 = "1d", "1 day"


class MarketData(models.Model):
    """One OHLCV candle. Prices are observations fed to numeric analysis, so they are floats; money is not."""

    exchange = models.CharField(max_length=40)
    symbol = models.CharField(max_length=30, help_text="Unified symbol, e.g. BTC/USDT")
    timeframe = models.CharField(max_length=4, choices=Timeframe.choices)
    ts = models.DateTimeField("open time")
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField()
    ingested_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "market_data"
        ordering = ["exchange", "symbol", "timeframe", "ts"]
        verbose_name = "candle"
        verbose_name_plural = "market data"
        constraints = [
            models.UniqueConstraint(
                fields=["exchange", "symbol", "timeframe", "ts"], name="market_data_natural_key"
            ),
            models.CheckConstraint(condition=Q(high__gte=models.F("low")), name="market_data_high_gte_low"),
            models.CheckConstraint(condition=Q(volume__gte=0), name="market_data_volume_nonneg"),
        ]
        indexes = [models.Index(fields=["symbol", "timeframe", "-ts"], name="market_data_symbol_recent")]

    def __str__(self) -> str:
        return f"{self.exchange} {self.symbol} {self.timeframe} {self.ts:%Y-%m-%d %H:%M} close {self.close:g}"


class SentimentLabel(models.TextChoices):
    BULLISH = "bullish", "Bullish"
    NEUTRAL = "neutral", "Neutral"
    BEARISH = "bearish", "Bearish"


class NewsArticle(TimeStampedModel):
    source = models.CharField(max_length=100, help_text="Feed or provider name")
    guid = models.CharField(max_length=500, help_text="The source's own id for the article, or its URL")
    title = models.CharField(max_length=500)
    summary = models.TextField(blank=True)
    url = models.URLField(max_length=1000)
    author = models.CharField(max_length=200, blank=True)
    published_at = models.DateTimeField()
    symbols = models.JSONField(default=list, blank=True, help_text="Symbols the article mentions")
    sentiment_score = models.FloatField(null=True, blank=True, help_text="Compound score in [-1, 1]")
    sentiment_label = models.CharField(max_length=10, choices=SentimentLabel.choices, blank=True)

    class Meta:
        db_table = "news_articles"
        ordering = ["-published_at"]
        constraints = [
            models.UniqueConstraint(fields=["source", "guid"], name="news_articles_natural_key"),
            models.CheckConstraint(
                condition=Q(sentiment_score__isnull=True)
                | Q(sentiment_score__gte=-1, sentiment_score__lte=1),
                name="news_articles_sentiment_range",
            ),
        ]
        indexes = [models.Index(fields=["-published_at"], name="news_articles_recent")]

    def __str__(self) -> str:
        return f"{self.source}: {self.title[:80]}"


class SentimentData(models.Model):
    """Aggregated social sentiment for one symbol, source and time window."""

    symbol = models.CharField(max_length=30)
    source = models.CharField(max_length=40, help_text="x, news, telegram, ...")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    sample_size = models.PositiveIntegerField(default=0)
    score = models.FloatField(help_text="Mean compound score in [-1, 1]")
    positive = models.PositiveIntegerField(default=0)
    neutral = models.PositiveIntegerField(default=0)
    negative = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "sentiment_data"
        ordering = ["symbol", "-window_end"]
        verbose_name_plural = "sentiment data"
        constraints = [
            models.UniqueConstraint(
                fields=["symbol", "source", "window_start", "window_end"], name="sentiment_data_natural_key"
            ),
            models.CheckConstraint(
                condition=Q(window_end__gt=models.F("window_start")), name="sentiment_window"
            ),
            models.CheckConstraint(
                condition=Q(score__gte=-1, score__lte=1), name="sentiment_data_score_range"
            ),
        ]
        indexes = [models.Index(fields=["symbol", "source", "-window_end"], name="sentiment_symbol_recent")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.source} {self.window_end:%Y-%m-%d %H:%M} {self.score:+.2f} (n={self.sample_size})"


class InsightType(models.TextChoices):
    PRICE_MOVE = "price_move", "Price move"
    RSI_OVERBOUGHT = "rsi_overbought", "RSI overbought"
    RSI_OVERSOLD = "rsi_oversold", "RSI oversold"
    MACD_BULLISH_CROSS = "macd_bullish_cross", "MACD bullish cross"
    MACD_BEARISH_CROSS = "macd_bearish_cross", "MACD bearish cross"
    BOLLINGER_BREAKOUT_UP = "bollinger_breakout_up", "Bollinger breakout up"
    BOLLINGER_BREAKOUT_DOWN = "bollinger_breakout_down", "Bollinger breakout down"
    VOLUME_SPIKE = "volume_spike", "Volume spike"
    SENTIMENT_SHIFT = "sentiment_shift", "Sentiment shift"


class InsightStatus(models.TextChoices):
    NEW = "new", "New"
    PLANNED = "planned", "Planned"
    USED = "used", "Used"
    DISCARDED = "discarded", "Discarded"
    EXPIRED = "expired", "Expired"


class Insight(TimeStampedModel):
    type = models.CharField(max_length=40, choices=InsightType.choices)
    symbol = models.CharField(max_length=30)
    timeframe = models.CharField(max_length=4, choices=Timeframe.choices, blank=True)
    confidence = models.FloatField(help_text="In [0, 1]")
    headline = models.CharField(max_length=200)
    evidence = models.JSONField(default=dict, help_text="The numbers behind the insight")
    status = models.CharField(max_length=12, choices=InsightStatus.choices, default=InsightStatus.NEW)
    detected_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "insights"
        ordering = ["-detected_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__gte=0, confidence__lte=1), name="insights_confidence_range"
            ),
        ]
        indexes = [
            models.Index(fields=["symbol", "type", "-detected_at"], name="insights_cooldown"),
            models.Index(fields=["status", "-confidence"], name="insights_queue"),
            models.Index(fields=["-detected_at"], name="insights_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.get_type_display()} ({self.confidence:.0%})"
