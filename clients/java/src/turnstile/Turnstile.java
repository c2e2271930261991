package turnstile;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import javax.sql.DataSource;

/**
 * pg_turnstile from Java, over any {@link DataSource}: a user's credential
 * from a realm, and counters.  Plain JDBC, nothing but the driver.
 *
 * <p>Every method takes a connection from the data source, runs one
 * statement in it and gives it back, so each call commits on its own (with
 * the data source's default autocommit).  The serialization that a
 * JVM-local lock cannot give across processes happens in the database: one
 * caller refreshes an expired credential while every other caller, in this
 * JVM or another, waits for it and reuses its login.
 *
 * <pre>
 * Turnstile turnstile = new Turnstile(dataSource);
 * String credential = turnstile.credential(userId);          // realm "default"
 * long runs = turnstile.incr("runs", 1);
 * try {
 *     turnstile.incr("stock", -1, seen);                      // only if it is still seen
 * } catch (OutOfSyncException e) {
 *     seen = e.current();                                     // retry from the current value
 * }
 * </pre>
 */
public class Turnstile
{
	private final DataSource dataSource;

	public Turnstile(DataSource dataSource)
	{
		this.dataSource = dataSource;
	}

	/** Sets a statement's parameters. */
	@FunctionalInterface
	private interface Binder
	{
		void bind(PreparedStatement ps) throws SQLException;
	}

	/** Reads the answer from the statement's one row. */
	@FunctionalInterface
	private interface Reader<T>
	{
		T read(ResultSet rs) throws SQLException;
	}

	/* Run one statement on a connection of its own and read its one row. */
	private <T> T queryOne(String sql, Binder binder, Reader<T> reader) throws SQLException
	{
		try (Connection conn = dataSource.getConnection();
			 PreparedStatement ps = conn.prepareStatement(sql))
		{
			binder.bind(ps);
			try (ResultSet rs = ps.executeQuery())
			{
				rs.next();
				return reader.read(rs);
			}
		}
	}

	/** The credential to use now for userId, in the realm "default". */
	public String credential(long userId) throws SQLException
	{
		return credential(userId, "default");
	}

	/** The credential to use now for userId in realm. */
	public String credential(long userId, String realm) throws SQLException
	{
		return queryOne("SELECT turnstile.credential_get(?, ?)", ps -> {
			ps.setLong(1, userId);
			ps.setString(2, realm);
		}, rs -> rs.getString(1));
	}

	/**
	 * Mark credential as not working (the service rejected it), if it is
	 * still the cached one: a late rejection of an old credential does not
	 * throw away a fresh one.  True if it was invalidated.
	 */
	public boolean invalidate(long userId, String realm, String credential) throws SQLException
	{
		return queryOne("SELECT turnstile.credential_invalidate(?, ?, ?)", ps -> {
			ps.setLong(1, userId);
			ps.setString(2, realm);
			ps.setString(3, credential);
		}, rs -> rs.getBoolean(1));
	}

	/** Add delta to a counter (created at 0 if absent); the new value. */
	public long incr(String name, long delta) throws SQLException
	{
		return queryOne("SELECT turnstile.counter_incr(?, ?)", ps -> {
			ps.setString(1, name);
			ps.setLong(2, delta);
		}, rs -> rs.getLong(1));
	}

	/**
	 * Add delta only if the counter's value is expected (a missing counter
	 * counts as 0); the new value.  Otherwise nothing changes, and the
	 * exception carries the current value.
	 */
	public long incr(String name, long delta, long expected)
		throws SQLException, OutOfSyncException
	{
		long newValue = Math.addExact(expected, delta);

		// counter_cas, not the raising conditional counter_incr: a refusal
		// is an answer, and leaves a caller's transaction usable.  The value
		// is 0 when NULL: the counter is missing.
		long[] appliedAndValue = queryOne(
			"SELECT applied, value FROM turnstile.counter_cas(?, ?, ?)", ps -> {
				ps.setString(1, name);
				ps.setLong(2, expected);
				ps.setLong(3, newValue);
			}, rs -> new long[] {rs.getBoolean(1) ? 1 : 0, rs.getLong(2)});
		if (appliedAndValue[0] == 0)
			throw new OutOfSyncException(name, expected, appliedAndValue[1]);
		return appliedAndValue[1];
	}
}
