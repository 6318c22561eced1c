-- The schema `banktasks db init` created before migrations (commit c76ee3c, 2026-12-07), sqlite.

-- Generated from that commit's models; tests/test_migrations.py upgrades it in place.

CREATE TABLE core_failed_tasks (
	id INTEGER NOT NULL, 
	task_id VARCHAR(64) NOT NULL, 
	task_name VARCHAR(200) NOT NULL, 
	plugin VARCHAR(100) NOT NULL, 
	kwargs JSON NOT NULL, 
	reason VARCHAR(32) NOT NULL, 
	error_type VARCHAR(200) NOT NULL, 
	error TEXT NOT NULL, 
	attempts INTEGER NOT NULL, 
	failed_at BIGINT NOT NULL, 
	retried_at BIGINT, 
	retry_task_id VARCHAR(64), 
	PRIMARY KEY (id), 
	UNIQUE (task_id)
);

CREATE INDEX ix_core_failed_tasks_failed_at ON core_failed_tasks (failed_at);

CREATE INDEX ix_core_failed_tasks_task_name ON core_failed_tasks (task_name);

CREATE TABLE core_task_outbox (
	task_id VARCHAR(64) NOT NULL, 
	task VARCHAR(200) NOT NULL, 
	message TEXT NOT NULL, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (task_id)
);

CREATE INDEX ix_core_task_outbox_created_at ON core_task_outbox (created_at);

CREATE TABLE fraud_alerts (
	id INTEGER NOT NULL, 
	rule VARCHAR(64) NOT NULL, 
	account_id INTEGER NOT NULL, 
	transaction_id INTEGER, 
	severity VARCHAR(16) NOT NULL, 
	score FLOAT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	evidence JSON NOT NULL, 
	dedup_key VARCHAR(200) NOT NULL, 
	created_at BIGINT NOT NULL, 
	resolved_at BIGINT, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_fraud_alerts_rule_dedup_key UNIQUE (rule, dedup_key)
);

CREATE INDEX ix_fraud_alerts_account_id ON fraud_alerts (account_id);

CREATE INDEX ix_fraud_alerts_created ON fraud_alerts (created_at);

CREATE INDEX ix_fraud_alerts_status_created ON fraud_alerts (status, created_at);

CREATE TABLE fraud_watermark (
	name VARCHAR(64) NOT NULL, 
	analysed_until BIGINT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE notifications_outbox (
	id INTEGER NOT NULL, 
	idempotency_key VARCHAR(200) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	user_id INTEGER, 
	recipient VARCHAR(254), 
	subject VARCHAR(998) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	error TEXT, 
	message_id VARCHAR(100) NOT NULL, 
	channel VARCHAR(50), 
	locked_until BIGINT, 
	created_at BIGINT NOT NULL, 
	sent_at BIGINT, 
	PRIMARY KEY (id), 
	UNIQUE (idempotency_key)
);

CREATE INDEX ix_notifications_outbox_status_created ON notifications_outbox (status, created_at);

CREATE INDEX ix_notifications_outbox_user_id ON notifications_outbox (user_id);

CREATE TABLE reports_daily (
	id INTEGER NOT NULL, 
	report_date DATE NOT NULL, 
	generated_at BIGINT NOT NULL, 
	sections JSON NOT NULL, 
	files JSON NOT NULL, 
	totals JSON NOT NULL, 
	runs INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_reports_daily_report_date UNIQUE (report_date)
);

CREATE TABLE users (
	id INTEGER NOT NULL, 
	email VARCHAR(254) NOT NULL, 
	full_name VARCHAR(200) NOT NULL, 
	is_active BOOLEAN NOT NULL, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (email)
);

CREATE INDEX ix_users_created_at ON users (created_at);

CREATE TABLE accounts (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	number VARCHAR(34) NOT NULL, 
	currency VARCHAR(3) NOT NULL, 
	balance_minor BIGINT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user_id) REFERENCES users (id), 
	UNIQUE (number)
);

CREATE INDEX ix_accounts_created_at ON accounts (created_at);

CREATE INDEX ix_accounts_user_id ON accounts (user_id);

CREATE TABLE export_exports (
	id INTEGER NOT NULL, 
	idempotency_key VARCHAR(200) NOT NULL, 
	user_id INTEGER NOT NULL, 
	format VARCHAR(32) NOT NULL, 
	start_date DATE NOT NULL, 
	end_date DATE NOT NULL, 
	path VARCHAR(1024) NOT NULL, 
	file_name VARCHAR(255) NOT NULL, 
	rows INTEGER NOT NULL, 
	bytes BIGINT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	created_at BIGINT NOT NULL, 
	ready_notified_at BIGINT, 
	PRIMARY KEY (id), 
	UNIQUE (idempotency_key), 
	FOREIGN KEY(user_id) REFERENCES users (id)
);

CREATE INDEX ix_export_exports_user_id ON export_exports (user_id);

CREATE TABLE transactions (
	id INTEGER NOT NULL, 
	account_id INTEGER NOT NULL, 
	amount_minor BIGINT NOT NULL, 
	currency VARCHAR(3) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	counterparty VARCHAR(200), 
	description VARCHAR(500), 
	created_at BIGINT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id)
);

CREATE INDEX ix_transactions_account_created ON transactions (account_id, created_at);

CREATE INDEX ix_transactions_created ON transactions (created_at);

CREATE INDEX ix_transactions_status_created ON transactions (status, created_at);
