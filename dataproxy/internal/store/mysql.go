package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQLConfig configures the MySQL/MariaDB store.
type MySQLConfig struct {
	// DSN in go-sql-driver/mysql form, naming a database:
	// "user:pass@tcp(host:3306)/gochat".
	DSN string
	// MaxOpen and MaxIdle size the connection pool; 0 means 32 and 16.
	MaxOpen int
	MaxIdle int
	// ConnMaxLifetime recycles connections (0 means 30 minutes), staying
	// below the server's wait_timeout.
	ConnMaxLifetime time.Duration
	// CreateDatabase creates the DSN's database (utf8mb4) when it is
	// missing.
	CreateDatabase bool
	Options
}

// OpenMySQL connects to MySQL and checks the connection once. A missing
// database (with CreateDatabase off) is ErrNoDatabase. Call Ready
// (or Migrate) before use.
func OpenMySQL(ctx context.Context, cfg MySQLConfig, log *slog.Logger) (*SQLStore, error) {
	mc, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("mysql dsn: %w", err)
	}
	if mc.DBName == "" {
		return nil, errors.New("mysql dsn: no database name")
	}
	if mc.Timeout == 0 {
		mc.Timeout = 5 * time.Second
	}
	if cfg.MaxOpen == 0 {
		cfg.MaxOpen = 32
	}
	if cfg.MaxIdle == 0 {
		cfg.MaxIdle = 16
	}
	if cfg.ConnMaxLifetime == 0 {
		cfg.ConnMaxLifetime = 30 * time.Minute
	}
	if cfg.CreateDatabase {
		if err := createDatabase(ctx, mc); err != nil {
			return nil, err
		}
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(cfg.MaxOpen)
	db.SetMaxIdleConns(cfg.MaxIdle)
	db.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == 1049 { // unknown database
			return nil, fmt.Errorf("mysql %s/%s: %w", mc.Addr, mc.DBName, ErrNoDatabase)
		}
		return nil, fmt.Errorf("mysql %s/%s: %w", mc.Addr, mc.DBName, err)
	}
	s, err := newSQLStore(db, db, mysqlDialect, cfg.Options, log)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// createDatabase creates mc's database unless it exists.
func createDatabase(ctx context.Context, mc *mysql.Config) error {
	server := mc.Clone()
	server.DBName = ""
	conn, err := mysql.NewConnector(server)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	q := "CREATE DATABASE IF NOT EXISTS " + quoteIdent(mc.DBName) + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("mysql %s: create database %s: %w", mc.Addr, mc.DBName, err)
	}
	return nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
