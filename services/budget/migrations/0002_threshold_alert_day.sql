-- The day a threshold last alerted: at most one alert per threshold per day, however often
-- the forecast crosses it that day (allocations arriving in tranches, a backlog replayed).
ALTER TABLE threshold_states ADD COLUMN last_alert_on date;
