/*
 * clients/java/test/TurnstileCheck.java - checks of the Turnstile class
 * against a database with pg_turnstile and the README's login service,
 * run by t/012_java_client.pl as the README's application role:
 *
 *   java -cp classes:turnstile.jar:/usr/share/java/postgresql.jar TurnstileCheck JDBC-URL
 *
 * Prints one line per check and exits 1 if any failed.
 */

import org.postgresql.ds.PGSimpleDataSource;
import turnstile.OutOfSyncException;
import turnstile.Turnstile;

public final class TurnstileCheck
{
	private static int failed = 0;

	private static void check(boolean ok, String what)
	{
		System.out.println((ok ? "ok: " : "FAILED: ") + what);
		if (!ok)
			failed++;
	}

	public static void main(String[] args) throws Exception
	{
		PGSimpleDataSource dataSource = new PGSimpleDataSource();
		dataSource.setURL(args[0]);
		Turnstile turnstile = new Turnstile(dataSource);
		String name = "java.check." + System.nanoTime();

		check(turnstile.incr(name, 5) == 5, "incr creates the counter at 0 and adds");
		check(turnstile.incr(name, 1, 5) == 6, "the conditional incr applies from the current value");
		try
		{
			turnstile.incr(name, 1, 5);
			check(false, "the conditional incr from a stale value throws");
		}
		catch (OutOfSyncException e)
		{
			check(e.current() == 6 && e.expected() == 5 && name.equals(e.name()),
				  "the conditional incr from a stale value throws, with the current value");
		}
		check(turnstile.incr(name, 0) == 6, "and changes nothing");
		try
		{
			turnstile.incr("java.check.missing." + System.nanoTime(), 1, 3);
			check(false, "a missing counter counts as 0");
		}
		catch (OutOfSyncException e)
		{
			check(e.current() == 0, "a missing counter counts as 0");
		}

		long user = 900000 + System.nanoTime() % 100000;
		String first = turnstile.credential(user);
		check(first.equals(turnstile.credential(user, "default")), "the cached credential again");
		check(!turnstile.invalidate(user, "default", "not-" + first), "another credential is not invalidated");
		check(turnstile.invalidate(user, "default", first), "the rejected one is");
		String second = turnstile.credential(user);
		check(!second.equals(first), "the next call logs in again: " + second);

		System.out.println(failed == 0 ? "ok" : "FAILED");
		System.exit(failed == 0 ? 0 : 1);
	}
}
