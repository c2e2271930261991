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

	/** The credential to use now for userId, in the realm "default". */
	public String credential(long userId) throws SQLException
	{
		return credential(userId, "default");
	}

	/** The credential to use now for userId in realm. */
	public String credential(long userId, String realm) throws SQLException
	{
		try (Connection conn = dataSource.getConnection();
			 PreparedStatement ps = conn.prepareStatement("SELECT turnstile.credential_get(?, ?)"))
		{
			ps.setLong(1, userId);
			ps.setString(2, realm);
			try (ResultSet rs = ps.executeQuery())
			{
				rs.next();
				return rs.getString(1);
			}
		}
	}

	/**
	 * Mark credential as not working (the service rejected it), if it is
	 * still the cached one: a late rejection of an old credential does not
	 * throw away a fresh one.  True if it was invalidated.
	 */
	public boolean invalidate(long userId, String realm, String credential) throws SQLException
	{
		try (Connection conn = dataSource.getConnection();
			 PreparedStatement ps = conn.prepareStatement(
				 "SELECT turnstile.credential_invalidate(?, ?, ?)"))
		{
			ps.setLong(1, userId);
			ps.setString(2, realm);
			ps.setString(3, credential);
			try (ResultSet rs = ps.executeQuery())
			{
				rs.next();
				return rs.getBoolean(1);
			}
		}
	}

	/** Add delta to a counter (created at 0 if absent); the new value. */
	public long incr(String name, long delta) throws SQLException
	{
		try (Connection conn = dataSource.getConnection();
			 PreparedStatement ps = conn.prepareStatement("SELECT turnstile.counter_incr(?, ?)"))
		{
			ps.setString(1, name);
			ps.setLong(2, delta);
			try (ResultSet rs = ps.executeQuery())
			{
				rs.next();
				return rs.getLong(1);
			}
		}
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
		// is an answer, and leaves a caller's transaction usable
		try (Connection conn = dataSource.getConnection();
			 PreparedStatement ps = conn.prepareStatement(
				 "SELECT applied, value FROM turnstile.counter_cas(?, ?, ?)"))
		{
			ps.setString(1, name);
			ps.setLong(2, expected);
			ps.setLong(3, newValue);
			try (ResultSet rs = ps.executeQuery())
			{
				rs.next();
				if (!rs.getBoolean(1))
				{
					long current = rs.getLong(2);	/* 0 when NULL: the counter is missing */
					throw new OutOfSyncException(name, expected, current);
				}
				return rs.getLong(2);
			}
		}
	}
}
