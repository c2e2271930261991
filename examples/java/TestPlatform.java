/*
 * examples/java/TestPlatform.java - the test-platform scenario of
 * pg_turnstile's credential cache, as a JDBC client.
 *
 * A test platform runs many test cases in parallel.  Each case acts as one
 * account of a shared pool, and every account's login expires and is
 * squeezed out by the next login.  Here a thread pool runs the cases; each
 * case asks for its account's credential with the Turnstile class
 * (clients/java), uses it against the service, and counts itself on the
 * run's counter.  No lock in this JVM protects anything, and none is
 * needed: several JVMs may run at once against the same database, and
 * pg_turnstile serializes them there, so each account is logged in once per
 * expiry and the run counter ends exact.
 *
 * The database needs pg_turnstile and the demo login service
 * (examples/login_service.sql), whose demo.validate stands in for "call the
 * service with this credential".  When the service rejects a credential
 * (an HTTP 401 in real life), a case invalidates exactly that credential and
 * asks again, which is how an application should react.
 *
 * Build and run (Debian: libpostgresql-jdbc-java, default-jdk-headless):
 *
 *   clients/java/build /tmp/tp
 *   javac -d /tmp/tp -cp /tmp/tp/turnstile.jar:/usr/share/java/postgresql.jar \
 *       examples/java/TestPlatform.java
 *   java -cp /tmp/tp:/tmp/tp/turnstile.jar:/usr/share/java/postgresql.jar TestPlatform \
 *       'jdbc:postgresql://127.0.0.1:5432/app?user=app&password=app-secret' 8 400 16 [run-name]
 *
 * It prints the logins each account needed during the run (1, or 0 when the
 * cached credential was still fresh) and the run counter, and exits 1 if an
 * account was logged in more than once, a case failed or got a rejected
 * credential, or the run counter is not exactly the number of cases.
 */

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.postgresql.ds.PGSimpleDataSource;
import turnstile.Turnstile;

public final class TestPlatform
{
	private final String counter;
	private final Turnstile turnstile;
	private final BlockingQueue<Connection> connections;	/* for the service */
	private final AtomicInteger rejected = new AtomicInteger();

	private TestPlatform(String counter, Turnstile turnstile, BlockingQueue<Connection> connections)
	{
		this.counter = counter;
		this.turnstile = turnstile;
		this.connections = connections;
	}

	public static void main(String[] args) throws Exception
	{
		if (args.length < 4 || args.length > 5)
		{
			System.err.println("usage: TestPlatform JDBC-URL ACCOUNTS CASES THREADS [RUN-NAME]");
			System.exit(2);
		}
		String url = args[0];
		int accounts = Integer.parseInt(args[1]);
		int cases = Integer.parseInt(args[2]);
		int threads = Integer.parseInt(args[3]);
		String counter = "testplatform." + (args.length == 5 ? args[4] : "run") + ".cases";

		/* a tiny connection pool: one connection per worker thread */
		BlockingQueue<Connection> pool = new ArrayBlockingQueue<>(threads);
		for (int i = 0; i < threads; i++)
			pool.add(DriverManager.getConnection(url));
		Connection admin = pool.peek();

		try (PreparedStatement ps = admin.prepareStatement(
				"SELECT turnstile.counter_set(?, 0)"))
		{
			ps.setString(1, counter);
			ps.executeQuery().close();
		}
		Map<Long, Long> before = logins(admin, accounts);

		PGSimpleDataSource dataSource = new PGSimpleDataSource();
		dataSource.setURL(url);
		TestPlatform platform = new TestPlatform(counter, new Turnstile(dataSource), pool);
		ExecutorService runner = Executors.newFixedThreadPool(threads);
		List<Future<?>> results = new ArrayList<>();
		long started = System.nanoTime();
		for (int i = 0; i < cases; i++)
		{
			long account = i % accounts + 1;
			results.add(runner.submit(() -> {
				platform.runCase(account);
				return null;
			}));
		}
		int failed = 0;
		for (Future<?> result : results)
		{
			try
			{
				result.get();
			}
			catch (Exception e)
			{
				if (failed++ < 5)
					System.err.println("case failed: " + e.getCause());
			}
		}
		runner.shutdown();
		runner.awaitTermination(1, TimeUnit.MINUTES);
		long millis = (System.nanoTime() - started) / 1_000_000;

		Map<Long, Long> after = logins(admin, accounts);
		long runCounter;
		try (PreparedStatement ps = admin.prepareStatement(
				"SELECT turnstile.counter_get(?)"))
		{
			ps.setString(1, counter);
			try (ResultSet rs = ps.executeQuery())
			{
				rs.next();
				runCounter = rs.getLong(1);
			}
		}
		for (Connection c : pool)
			c.close();

		StringBuilder perAccount = new StringBuilder();
		boolean loggedInTwice = false;
		for (long account = 1; account <= accounts; account++)
		{
			long n = after.getOrDefault(account, 0L) - before.getOrDefault(account, 0L);
			perAccount.append(account == 1 ? "" : " ").append(account).append('=').append(n);
			loggedInTwice |= n > 1;
		}
		System.out.printf("%d cases on %d accounts, %d threads, in %d ms%n",
						  cases, accounts, threads, millis);
		System.out.println("logins per account: " + perAccount);
		System.out.println("rejected credentials: " + platform.rejected.get());
		System.out.println("failed cases: " + failed);
		System.out.printf("run counter: %d (expected %d)%n", runCounter, cases);

		boolean ok = !loggedInTwice && failed == 0 && platform.rejected.get() == 0
			&& runCounter == cases;
		System.out.println(ok ? "ok" : "FAILED");
		System.exit(ok ? 0 : 1);
	}

	/*
	 * One test case: get the account's credential, use it, count the case.
	 * This is the seed's getCertificate(id), without its JVM-local lock and
	 * its isolation annotations: turnstile.credential(account).
	 */
	private void runCase(long account) throws Exception
	{
		String credential = turnstile.credential(account);
		if (!serviceAccepts(account, credential))
		{
			/*
			 * The service said 401.  Invalidate this credential (not one
			 * another case may have refreshed meanwhile) and ask again: one
			 * caller logs in, the others get its credential.
			 */
			rejected.incrementAndGet();
			turnstile.invalidate(account, "default", credential);
			credential = turnstile.credential(account);
			if (!serviceAccepts(account, credential))
				throw new IllegalStateException("account " + account
												+ ": fresh credential rejected too");
		}
		turnstile.incr(counter, 1);
	}

	/* Stands in for calling the service with the credential. */
	private boolean serviceAccepts(long account, String credential) throws Exception
	{
		Connection conn = connections.take();
		try (PreparedStatement ps = conn.prepareStatement("SELECT demo.validate(?, ?)"))
		{
			ps.setLong(1, account);
			ps.setString(2, credential);
			try (ResultSet rs = ps.executeQuery())
			{
				rs.next();
				return rs.getBoolean(1);
			}
		}
		finally
		{
			connections.put(conn);
		}
	}

	/* Logins so far per account, as pg_turnstile counted them. */
	private static Map<Long, Long> logins(Connection conn, int accounts) throws SQLException
	{
		Map<Long, Long> logins = new TreeMap<>();
		try (PreparedStatement ps = conn.prepareStatement(
				"SELECT user_id, logins FROM turnstile.credential_status"
				+ " WHERE realm = 'default' AND user_id BETWEEN 1 AND ?"))
		{
			ps.setLong(1, accounts);
			try (ResultSet rs = ps.executeQuery())
			{
				while (rs.next())
					logins.put(rs.getLong(1), rs.getLong(2));
			}
		}
		return logins;
	}
}
